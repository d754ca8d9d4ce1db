//! molt-ai-gateway
