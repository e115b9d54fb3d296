//! The JSON hub protocol (HUB-PROTOCOL.md §5.1): every message is one JSON object.

mod decode;
mod encode;
mod scanner;
mod unescape;

pub(crate) use decode::decode;
pub(crate) use encode::{encode, write_str};
