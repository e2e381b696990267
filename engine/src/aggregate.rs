//! Deterministic aggregates: a blake3 digest over children's results in declaration
//! order, so a wave's or run's aggregate is the same whatever order its children
//! completed in.

use crate::record::{Digest, Terminal};

/// Version of the aggregate encoding, hashed first: a change of layout changes every
/// digest on purpose rather than colliding with old ones.
const AGGREGATE_VERSION: u8 = 1;

/// Hashes `(task id, terminal state, attempts, output digest)` items in the order given.
pub fn digest<'a>(items: impl Iterator<Item = (&'a str, Option<Terminal>, u32, Digest)>) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(&[AGGREGATE_VERSION]);
    for (id, state, attempts, output) in items {
        h.update(&(id.len() as u32).to_le_bytes());
        h.update(id.as_bytes());
        h.update(&[state.map_or(0, |s| s as u8 + 1)]);
        h.update(&attempts.to_le_bytes());
        h.update(&output.0);
    }
    Digest(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_every_field_matter() {
        let a = ("a", Some(Terminal::Succeeded), 1, Digest::ZERO);
        let b = ("b", Some(Terminal::Failed), 2, Digest::of(b"x"));
        let ab = digest([a, b].into_iter());
        assert_ne!(ab, digest([b, a].into_iter()));
        assert_ne!(ab, digest([a, ("b", Some(Terminal::Failed), 3, Digest::of(b"x"))].into_iter()));
        assert_ne!(ab, digest([a, ("b", Some(Terminal::Exhausted), 2, Digest::of(b"x"))].into_iter()));
        // Length prefixes keep ids from running into each other.
        assert_ne!(
            digest([("ab", None, 0, Digest::ZERO), ("c", None, 0, Digest::ZERO)].into_iter()),
            digest([("a", None, 0, Digest::ZERO), ("bc", None, 0, Digest::ZERO)].into_iter())
        );
    }
}
