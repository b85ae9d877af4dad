//! A large multi-layer image for the pull benchmark: each layer holds many
//! files of text-like data (a word stream), which compresses about as well
//! as real images do (about 2.7:1 with gzip).

use crate::image::{Format, Image, Platform, RunConfig, build_image};
use crate::layer::{Compression, Layer};

/// Deterministic xorshift64*, so every run builds the same image.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

const FILE_BYTES: usize = 64 * 1024;

/// The image: `base` (if any), then `layers` data layers of `layer_mb` MiB.
pub fn build(layers: usize, layer_mb: usize, base: Option<&Layer>) -> Image {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let words: Vec<Vec<u8>> = (0..2048)
        .map(|_| {
            let len = 2 + (rng.next() % 9) as usize;
            (0..len).map(|_| b'a' + (rng.next() % 26) as u8).collect()
        })
        .collect();
    let mut built = Vec::new();
    for l in 0..layers {
        let mut layer = Layer::new();
        layer.dir(&format!("data{l}"), 0o755);
        for f in 0..(layer_mb * 1024 * 1024 / FILE_BYTES) {
            let mut data = Vec::with_capacity(FILE_BYTES + 16);
            while data.len() < FILE_BYTES {
                data.extend_from_slice(&words[(rng.next() % words.len() as u64) as usize]);
                data.push(if rng.next().is_multiple_of(12) {
                    b'\n'
                } else {
                    b' '
                });
            }
            data.truncate(FILE_BYTES);
            if f.is_multiple_of(64) {
                layer.dir(&format!("data{l}/d{}", f / 64), 0o755);
            }
            layer.file(&format!("data{l}/d{}/f{f}.txt", f / 64), 0o644, data);
        }
        built.push(layer);
    }
    let all: Vec<&Layer> = base.into_iter().chain(built.iter()).collect();
    let run = RunConfig {
        env: vec![crate::catalog::PATH_ENV.into()],
        cmd: Some(vec!["sh"]),
        ..Default::default()
    };
    build_image(&all, Compression::Gzip, &run, Platform::AMD64, Format::Oci)
}
