//! Images that came with inbound messages. Each is kept once in the store
//! under its digest, transcripts refer to it as `media:<digest>.<ext>`, and it
//! is inlined (as a `data:` URL) only into the model calls that need it, so a
//! session stays small however many photos it holds.

use crate::channel::ChannelError;
use crate::message::{ContentBlock, Message};
use crate::store::{Store, StoreError};
use base64::Engine;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The largest image kept: its base64 form is 5 MiB, the most Anthropic
/// takes per image (OpenAI takes more).
pub const MAX_IMAGE_BYTES: u64 = 3_932_160;

/// The most images one model call carries: the newest ones; older images are
/// named in a line of text instead, so a long session does not resend them all.
pub const MAX_IMAGES_PER_CALL: usize = 4;

/// The scheme of an image reference in a transcript.
pub const MEDIA_SCHEME: &str = "media:";

/// The longest side, in pixels, of an image kept: Anthropic refuses larger ones.
pub const MAX_IMAGE_SIDE: u32 = 8000;

/// What the model sees in place of an image a call does not carry (one of
/// the older ones, or one the store no longer holds).
pub const IMAGE_NOT_SHOWN: &str = "[an image, not shown here]";

/// The image formats both providers take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageType {
    /// `image/jpeg`.
    Jpeg,
    /// `image/png`.
    Png,
    /// `image/gif`.
    Gif,
    /// `image/webp`.
    Webp,
}

impl ImageType {
    /// The format `bytes` are in, read from their first bytes (a platform's
    /// declared media type is not trusted: providers refuse a mismatch).
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        match imagesize::image_type(bytes).ok()? {
            imagesize::ImageType::Jpeg => Some(Self::Jpeg),
            imagesize::ImageType::Png => Some(Self::Png),
            imagesize::ImageType::Gif => Some(Self::Gif),
            imagesize::ImageType::Webp => Some(Self::Webp),
            _ => None,
        }
    }

    fn from_extension(extension: &str) -> Option<Self> {
        [Self::Jpeg, Self::Png, Self::Gif, Self::Webp]
            .into_iter()
            .find(|kind| kind.extension() == extension)
    }

    /// Its media type, such as `image/png`.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Gif => "image/gif",
            Self::Webp => "image/webp",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::Gif => "gif",
            Self::Webp => "webp",
        }
    }
}

/// Why an image was not kept.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The bytes are not a JPEG, PNG, GIF or WebP image.
    #[error("not an image a model takes (JPEG, PNG, GIF or WebP)")]
    NotAnImage,
    /// The image is over [`MAX_IMAGE_BYTES`].
    #[error("the image has {size} bytes; at most {MAX_IMAGE_BYTES} go to a model")]
    TooLarge {
        /// Its size in bytes.
        size: u64,
    },
    /// A side of the image is over [`MAX_IMAGE_SIDE`] pixels.
    #[error("the image is {width}×{height} pixels; at most {MAX_IMAGE_SIDE} a side go to a model")]
    TooManyPixels {
        /// Its width.
        width: usize,
        /// Its height.
        height: usize,
    },
    /// The run was stopped before it was fetched.
    #[error("the run was stopped first")]
    Stopped,
    /// The channel could not download it.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Images kept in a [`Store`] under `media/`.
#[derive(Clone)]
pub struct MediaStore {
    store: Arc<dyn Store>,
}

impl MediaStore {
    /// Images kept in `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Keeps an image (once, however often it is kept) and returns the
    /// content block that refers to it.
    pub async fn keep_image(&self, bytes: Bytes) -> Result<ContentBlock, MediaError> {
        let size = bytes.len() as u64;
        if size > MAX_IMAGE_BYTES {
            return Err(MediaError::TooLarge { size });
        }
        let kind = ImageType::sniff(&bytes).ok_or(MediaError::NotAnImage)?;
        let imagesize::ImageSize { width, height } =
            imagesize::blob_size(&bytes).map_err(|_| MediaError::NotAnImage)?;
        if width.max(height) > MAX_IMAGE_SIDE as usize {
            return Err(MediaError::TooManyPixels { width, height });
        }
        let digest = Sha256::digest(&bytes);
        let name = format!("{}.{}", hex(&digest), kind.extension());
        // The name is the digest: an image already there is this one.
        self.store.put_if_absent(&key(&name), bytes).await?;
        Ok(ContentBlock::Image {
            url: format!("{MEDIA_SCHEME}{name}"),
            media_type: Some(kind.media_type().to_owned()),
        })
    }

    /// `messages` as a model call carries them: the newest
    /// [`MAX_IMAGES_PER_CALL`] kept images inlined as `data:` URLs, older or
    /// missing ones replaced by a line of text. Other blocks are untouched.
    pub async fn inline_images(
        &self,
        mut messages: Vec<Message>,
    ) -> Result<Vec<Message>, StoreError> {
        let mut inlined = 0;
        for block in messages
            .iter_mut()
            .rev()
            .flat_map(|m| m.content.iter_mut().rev())
        {
            let ContentBlock::Image { url, .. } = block else {
                continue;
            };
            let Some(name) = url.strip_prefix(MEDIA_SCHEME) else {
                continue;
            };
            let bytes = match inlined < MAX_IMAGES_PER_CALL {
                true => self.load(name).await?,
                false => None,
            };
            *block = match bytes
                .as_deref()
                .and_then(|b| Some((ImageType::sniff(b)?, b)))
            {
                Some((kind, bytes)) => {
                    inlined += 1;
                    ContentBlock::Image {
                        url: data_url(kind, bytes),
                        media_type: Some(kind.media_type().to_owned()),
                    }
                }
                None => ContentBlock::Text {
                    text: IMAGE_NOT_SHOWN.to_owned(),
                },
            };
        }
        Ok(messages)
    }

    /// The image named `name`, if the name is one this store gives
    /// (`<64 hex digits>.<extension>`) and the store holds it.
    async fn load(&self, name: &str) -> Result<Option<Bytes>, StoreError> {
        let valid = name.split_once('.').is_some_and(|(digest, extension)| {
            digest.len() == 64
                && digest
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                && ImageType::from_extension(extension).is_some()
        });
        if !valid {
            return Ok(None);
        }
        self.store.get(&key(name)).await
    }
}

fn key(name: &str) -> String {
    format!("media/{name}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn data_url(kind: ImageType, bytes: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    format!("data:{};base64,{encoded}", kind.media_type())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use futures::executor::block_on;

    /// A PNG of `width` × `height` pixels as far as its header goes, told apart by `n`.
    fn png_sized(width: u32, height: u32, n: u8) -> Bytes {
        let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        bytes.extend(width.to_be_bytes());
        bytes.extend(height.to_be_bytes());
        bytes.extend([8, 2, 0, 0, 0, n]);
        Bytes::from(bytes)
    }

    fn png(n: u8) -> Bytes {
        png_sized(16, 16, n)
    }

    #[test]
    fn formats_are_read_from_the_bytes() {
        assert_eq!(ImageType::sniff(&png(0)), Some(ImageType::Png));
        let jpeg = b"\xff\xd8\xff\xe0\0\x10JFIF\0\x01\x01";
        assert_eq!(ImageType::sniff(jpeg), Some(ImageType::Jpeg));
        assert_eq!(
            ImageType::sniff(b"GIF89a\x10\0\x10\0\0\0\0"),
            Some(ImageType::Gif)
        );
        let webp = b"RIFF\0\0\0\0WEBPVP8 ";
        assert_eq!(ImageType::sniff(webp), Some(ImageType::Webp));
        assert_eq!(ImageType::sniff(b"<html>"), None);
        assert_eq!(ImageType::sniff(b""), None);
    }

    #[test]
    fn an_image_is_kept_once_and_refused_when_not_an_image_or_too_large() {
        let media = MediaStore::new(Arc::new(MemoryStore::default()));
        let first = block_on(media.keep_image(png(1))).unwrap();
        assert_eq!(block_on(media.keep_image(png(1))).unwrap(), first);
        let ContentBlock::Image { url, media_type } = &first else {
            panic!("{first:?}")
        };
        assert!(url.starts_with("media:") && url.ends_with(".png"), "{url}");
        assert_eq!(media_type.as_deref(), Some("image/png"));
        let login_page = Bytes::from_static(b"<html>login</html>");
        let refused = block_on(media.keep_image(login_page));
        assert!(matches!(refused, Err(MediaError::NotAnImage)));
        let huge = Bytes::from(vec![0xFF; MAX_IMAGE_BYTES as usize + 1]);
        let refused = block_on(media.keep_image(huge));
        assert!(matches!(refused, Err(MediaError::TooLarge { .. })));
        // A panorama under the byte limit but over the side limit.
        let panorama = png_sized(MAX_IMAGE_SIDE + 1, 600, 0);
        let refused = block_on(media.keep_image(panorama));
        assert!(matches!(
            refused,
            Err(MediaError::TooManyPixels { width: 8001, .. })
        ));
        assert!(block_on(media.keep_image(png_sized(MAX_IMAGE_SIDE, 600, 0))).is_ok());
    }

    #[test]
    fn only_the_newest_images_are_inlined_and_unknown_references_become_text() {
        let media = MediaStore::new(Arc::new(MemoryStore::default()));
        let mut messages = Vec::new();
        for n in 0..6 {
            let image = block_on(media.keep_image(png(n))).unwrap();
            let caption = ContentBlock::Text {
                text: format!("photo {n}"),
            };
            messages.push(Message {
                role: crate::message::Role::User,
                content: vec![caption, image],
            });
        }
        // References this store never gives, and one it does not hold.
        let digest = "0".repeat(64);
        let forged = [
            "media:../pairing/telegram.json".to_owned(),
            "media:".to_owned(),
            format!("media:{digest}.json"),
            format!("media:{}.png", "a".repeat(2000)),
            format!("media:{digest}.png"),
        ];
        for url in forged {
            let media_type = None;
            messages[5]
                .content
                .push(ContentBlock::Image { url, media_type });
        }
        let remote = ContentBlock::Image {
            url: "https://example.com/a.png".into(),
            media_type: None,
        };
        messages[5].content.push(remote.clone());

        let sent = block_on(media.inline_images(messages)).unwrap();
        let inlined = |m: &Message| {
            m.content.iter().any(|b| {
                matches!(b, ContentBlock::Image { url, .. } if url.starts_with("data:image/png;base64,"))
            })
        };
        let inline: Vec<bool> = sent.iter().map(inlined).collect();
        assert_eq!(inline, [false, false, true, true, true, true]);
        assert_eq!(sent[0].text(), format!("photo 0{IMAGE_NOT_SHOWN}"));
        let not_shown = ContentBlock::Text {
            text: IMAGE_NOT_SHOWN.into(),
        };
        assert!(sent[5].content[2..7].iter().all(|b| *b == not_shown));
        assert_eq!(
            sent[5].content[7], remote,
            "other URLs are left as they are"
        );
        let ContentBlock::Image { url, .. } = &sent[5].content[1] else {
            panic!("{:?}", sent[5].content[1])
        };
        let encoded = url.strip_prefix("data:image/png;base64,").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(decoded, png(5));
    }
}
