"""The official `openai` and `anthropic` Python SDKs against the molt-ai-gateway proxy.

Run by tests/sdk.rs, which starts the proxy over fake providers and sets
PROXY_URL and GATEWAY_KEY. Every check runs through both provider kinds.
"""

import json
import os
import unittest

import anthropic
import openai

PROXY_URL = os.environ["PROXY_URL"]
GATEWAY_KEY = os.environ["GATEWAY_KEY"]
PROVIDERS = ["anthropic", "openai"]
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
}
EXPECTED_ARGUMENTS = {"city": "Paris", "days": 3}


def openai_client(key=GATEWAY_KEY):
    return openai.OpenAI(base_url=PROXY_URL + "/v1", api_key=key, max_retries=0, timeout=20)


def anthropic_client(key=GATEWAY_KEY):
    return anthropic.Anthropic(base_url=PROXY_URL, api_key=key, max_retries=0, timeout=20)


class OpenAiSdk(unittest.TestCase):
    def test_plain(self):
        for provider in PROVIDERS:
            with self.subTest(provider=provider):
                response = openai_client().chat.completions.create(
                    model=f"{provider}/echo",
                    messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}],
                )
                self.assertEqual(response.choices[0].message.content, "You said: hello")
                self.assertEqual(response.choices[0].finish_reason, "stop")
                self.assertGreater(response.usage.prompt_tokens, 0)
                self.assertEqual(response.usage.completion_tokens, 3)

    def test_streaming(self):
        for provider in PROVIDERS:
            with self.subTest(provider=provider):
                stream = openai_client().chat.completions.create(
                    model=f"{provider}/echo",
                    messages=[{"role": "user", "content": "stream this"}],
                    stream=True,
                    stream_options={"include_usage": True},
                )
                text, usage, finish = "", None, None
                for chunk in stream:
                    if chunk.usage is not None:
                        usage = chunk.usage
                    for choice in chunk.choices:
                        text += choice.delta.content or ""
                        finish = choice.finish_reason or finish
                self.assertEqual(text, "You said: stream this")
                self.assertEqual(finish, "stop")
                self.assertIsNotNone(usage)
                self.assertEqual(usage.completion_tokens, 4)

    def test_tool_calls(self):
        for provider in PROVIDERS:
            with self.subTest(provider=provider):
                client = openai_client()
                tools = [{"type": "function", "function": WEATHER_TOOL}]
                messages = [{"role": "user", "content": "weather in Paris?"}]
                response = client.chat.completions.create(model=f"{provider}/tool", messages=messages, tools=tools)
                choice = response.choices[0]
                self.assertEqual(choice.finish_reason, "tool_calls")
                call = choice.message.tool_calls[0]
                self.assertEqual(call.function.name, "get_weather")
                self.assertEqual(json.loads(call.function.arguments), EXPECTED_ARGUMENTS)
                # Streamed, the arguments arrive in pieces and add up to the same object.
                stream = client.chat.completions.create(
                    model=f"{provider}/tool", messages=messages, tools=tools, stream=True
                )
                arguments, name = "", None
                for chunk in stream:
                    for choice in chunk.choices:
                        for delta in choice.delta.tool_calls or []:
                            name = delta.function.name or name
                            arguments += delta.function.arguments or ""
                self.assertEqual(name, "get_weather")
                self.assertEqual(json.loads(arguments), EXPECTED_ARGUMENTS)
                # The result goes back and the conversation continues.
                messages += [
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"id": call.id, "type": "function", "function": {"name": call.function.name, "arguments": call.function.arguments}}],
                    },
                    {"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"},
                ]
                follow_up = client.chat.completions.create(model=f"{provider}/echo", messages=messages, tools=tools)
                self.assertEqual(follow_up.choices[0].message.content, "You said: 18 C and sunny")

    def test_errors(self):
        client = openai_client()
        with self.assertRaises(openai.NotFoundError):
            client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
        with self.assertRaises(openai.AuthenticationError):
            openai_client("wrong-key").chat.completions.create(model="openai/echo", messages=[{"role": "user", "content": "hi"}])
        for provider in PROVIDERS:
            with self.subTest(provider=provider):
                with self.assertRaises(openai.RateLimitError) as raised:
                    client.chat.completions.create(model=f"{provider}/rate-limited", messages=[{"role": "user", "content": "hi"}])
                self.assertIsNotNone(raised.exception.response.headers.get("retry-after"))
                with self.assertRaises(openai.APIError):
                    for _ in client.chat.completions.create(
                        model=f"{provider}/error-mid-stream", messages=[{"role": "user", "content": "one two three"}], stream=True
                    ):
                        pass

    def test_fallback_and_models(self):
        raw = openai_client().chat.completions.with_raw_response.create(
            model="fallback", messages=[{"role": "user", "content": "hi"}]
        )
        self.assertEqual(raw.headers.get("cf-aig-step"), "1")
        self.assertEqual(raw.parse().choices[0].message.content, "You said: hi")
        ids = [model.id for model in openai_client().models.list()]
        self.assertIn("fallback", ids)


class AnthropicSdk(unittest.TestCase):
    def test_plain(self):
        for provider in PROVIDERS:
            with self.subTest(provider=provider):
                message = anthropic_client().messages.create(
                    model=f"{provider}/echo",
                    max_tokens=100,
                    system="Be brief.",
                    messages=[{"role": "user", "content": "hello"}],
                )
                self.assertEqual(message.content[0].text, "You said: hello")
                self.assertEqual(message.stop_reason, "end_turn")
                self.assertGreater(message.usage.input_tokens, 0)
                self.assertEqual(message.usage.output_tokens, 3)

    def test_streaming(self):
        for provider in PROVIDERS:
            with self.subTest(provider=provider):
                with anthropic_client().messages.stream(
                    model=f"{provider}/echo", max_tokens=100, messages=[{"role": "user", "content": "stream this"}]
                ) as stream:
                    text = "".join(stream.text_stream)
                    final = stream.get_final_message()
                self.assertEqual(text, "You said: stream this")
                self.assertEqual(final.stop_reason, "end_turn")
                self.assertEqual(final.usage.output_tokens, 4)

    def test_tool_use(self):
        tool = {"name": WEATHER_TOOL["name"], "description": WEATHER_TOOL["description"], "input_schema": WEATHER_TOOL["parameters"]}
        for provider in PROVIDERS:
            with self.subTest(provider=provider):
                client = anthropic_client()
                messages = [{"role": "user", "content": "weather in Paris?"}]
                message = client.messages.create(model=f"{provider}/tool", max_tokens=100, tools=[tool], messages=messages)
                self.assertEqual(message.stop_reason, "tool_use")
                use = next(block for block in message.content if block.type == "tool_use")
                self.assertEqual(use.name, "get_weather")
                self.assertEqual(use.input, EXPECTED_ARGUMENTS)
                with client.messages.stream(model=f"{provider}/tool", max_tokens=100, tools=[tool], messages=messages) as stream:
                    final = stream.get_final_message()
                streamed = next(block for block in final.content if block.type == "tool_use")
                self.assertEqual(streamed.input, EXPECTED_ARGUMENTS)
                messages += [
                    {"role": "assistant", "content": [block.model_dump() for block in message.content]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 C and sunny"}]},
                ]
                follow_up = client.messages.create(model=f"{provider}/echo", max_tokens=100, tools=[tool], messages=messages)
                self.assertEqual(follow_up.content[0].text, "You said: 18 C and sunny")

    def test_errors(self):
        client = anthropic_client()
        with self.assertRaises(anthropic.NotFoundError):
            client.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        with self.assertRaises(anthropic.AuthenticationError):
            anthropic_client("wrong-key").messages.create(model="openai/echo", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        for provider in PROVIDERS:
            with self.subTest(provider=provider):
                with self.assertRaises(anthropic.RateLimitError):
                    client.messages.create(model=f"{provider}/rate-limited", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
                with self.assertRaises(anthropic.APIError):
                    with client.messages.stream(
                        model=f"{provider}/error-mid-stream", max_tokens=10, messages=[{"role": "user", "content": "one two three"}]
                    ) as stream:
                        for _ in stream.text_stream:
                            pass


if __name__ == "__main__":
    unittest.main(verbosity=2)
