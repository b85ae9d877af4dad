//! Images: references, registry pulls, the content store, layer snapshots and
//! the image records behind the CRI ImageService.

pub mod content;
pub mod manifest;
pub mod reference;
pub mod unpack;
