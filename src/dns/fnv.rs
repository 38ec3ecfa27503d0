//! 64-bit FNV-1a: a tiny hash that is the same on every build and platform
//! (unlike std's randomly keyed SipHash) and cheap on short keys such as
//! DNS names. The fast path's answer and negative tables and weighted
//! steering use it.
//! Not for tables whose keys an attacker chooses: it has no key.

use std::hash::Hasher;

/// FNV-1a offset basis: the hash of no bytes.
pub const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// Continues the hash `h` over `bytes` (start with [`OFFSET`]).
pub fn extend(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(PRIME);
    }
    h
}

/// FNV-1a of `bytes`.
pub fn hash(bytes: &[u8]) -> u64 {
    extend(OFFSET, bytes)
}

/// [`Hasher`] over FNV-1a, for `HashMap`s with short keys.
#[derive(Default)]
pub struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let h = if self.0 == 0 { OFFSET } else { self.0 };
        self.0 = extend(h, bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Published FNV-1a 64-bit test vectors.
    #[test]
    fn known_vectors() {
        assert_eq!(hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn hasher_continues_across_writes() {
        let mut h = Fnv::default();
        h.write(b"foo");
        h.write(b"bar");
        assert_eq!(h.finish(), hash(b"foobar"));
        assert_eq!(extend(hash(b"foo"), b"bar"), hash(b"foobar"));
    }
}
