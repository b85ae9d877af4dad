//! Object ids: how new ones are made and how clients may shorten them.

use std::collections::BTreeMap;

/// 64 random hex digits, as container ids look.
pub fn new_id() -> String {
    let mut bytes = [0u8; 32];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_err()
    {
        // Never reached on Linux; still unique enough within one boot.
        let t = crate::time::now_nanos() as u128;
        bytes[..16].copy_from_slice(&t.to_le_bytes());
    }
    hex::encode(bytes)
}

/// What an id or id prefix names in a map keyed by id.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'a, T> {
    Found(&'a T),
    Ambiguous,
    Missing,
}

/// The entry whose id is `id`, or the only one it is a prefix of (as
/// crictl lets users shorten ids).
pub fn by_prefix<'a, T>(map: &'a BTreeMap<String, T>, id: &str) -> Lookup<'a, T> {
    if let Some(value) = map.get(id) {
        return Lookup::Found(value);
    }
    let mut matches = map
        .range(id.to_string()..)
        .take_while(|(k, _)| k.starts_with(id));
    match (matches.next(), matches.next()) {
        (Some((_, value)), None) => Lookup::Found(value),
        (Some(_), Some(_)) => Lookup::Ambiguous,
        (None, _) => Lookup::Missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex() {
        let (a, b) = (new_id(), new_id());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }

    #[test]
    fn prefixes_find_one_entry() {
        let map: BTreeMap<String, u8> = [
            ("abc1".to_string(), 1),
            ("abc2".to_string(), 2),
            ("abd".to_string(), 3),
        ]
        .into();
        assert_eq!(by_prefix(&map, "abc1"), Lookup::Found(&1));
        assert_eq!(by_prefix(&map, "abd"), Lookup::Found(&3));
        assert_eq!(by_prefix(&map, "ab"), Lookup::Ambiguous);
        assert_eq!(by_prefix(&map, "x"), Lookup::Missing);
    }
}
