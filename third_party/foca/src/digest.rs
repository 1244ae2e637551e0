/* This Source Code Form is subject to the terms of the Mozilla Public
 * License, v. 2.0. If a copy of the MPL was not distributed with this
 * file, You can obtain one at https://mozilla.org/MPL/2.0/. */
//! ha patch (issue 17): a digest of the active members, kept up to date as they change.
//!
//! A push-pull anti-entropy exchange compares two members' views by a digest of their
//! active members. Recomputing it over the whole member list on every exchange was O(N) per
//! exchange, O(N^2) per interval for the cluster; foca knows exactly when its active set
//! changes (`Members::apply`), so it keeps the digest there in O(1) per change.

/// How many buckets [`ActiveDigest`] splits the active members into.
pub const DIGEST_BUCKETS: usize = 64;

/// Where an identity falls in an [`ActiveDigest`], from [`crate::Identity::digest_element`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DigestElement {
    /// The bucket, below [`DIGEST_BUCKETS`] (larger values are reduced modulo it).
    pub bucket: usize,
    /// The identity's hash; the digest XORs them, so equal sets have equal digests whatever
    /// the order members were added in.
    pub hash: u64,
}

/// The count and the XOR of element hashes of some identities.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BucketDigest {
    /// How many identities.
    pub count: u32,
    /// XOR of their [`DigestElement::hash`].
    pub hash: u64,
}

impl BucketDigest {
    /// Add one identity's hash (or remove it: XOR is its own inverse, only the count differs).
    pub const fn add(&mut self, hash: u64) {
        self.count = self.count.wrapping_add(1);
        self.hash ^= hash;
    }

    const fn remove(&mut self, hash: u64) {
        self.count = self.count.wrapping_sub(1);
        self.hash ^= hash;
    }
}

/// The active members (alive or suspect) of a foca instance, digested per bucket; see
/// [`crate::Foca::active_digest`]. Empty when the identity type keeps no digest (the default
/// [`crate::Identity::digest_element`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveDigest {
    buckets: [BucketDigest; DIGEST_BUCKETS],
}

impl Default for ActiveDigest {
    fn default() -> Self {
        Self {
            buckets: [BucketDigest::default(); DIGEST_BUCKETS],
        }
    }
}

impl ActiveDigest {
    /// The digest of each bucket.
    pub const fn buckets(&self) -> &[BucketDigest; DIGEST_BUCKETS] {
        &self.buckets
    }

    /// The digest of all buckets together.
    pub fn whole(&self) -> BucketDigest {
        self.buckets
            .iter()
            .fold(BucketDigest::default(), |whole, bucket| BucketDigest {
                count: whole.count.wrapping_add(bucket.count),
                hash: whole.hash ^ bucket.hash,
            })
    }

    pub(crate) const fn add(&mut self, element: Option<DigestElement>) {
        if let Some(element) = element {
            self.buckets[element.bucket % DIGEST_BUCKETS].add(element.hash);
        }
    }

    pub(crate) const fn remove(&mut self, element: Option<DigestElement>) {
        if let Some(element) = element {
            self.buckets[element.bucket % DIGEST_BUCKETS].remove(element.hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_then_removing_restores_the_digest() {
        let mut digest = ActiveDigest::default();
        let a = DigestElement {
            bucket: 3,
            hash: 0xdead_beef,
        };
        let b = DigestElement {
            bucket: 3 + DIGEST_BUCKETS,
            hash: 0x1234,
        };
        digest.add(Some(a));
        let only_a = digest.clone();
        digest.add(Some(b));
        assert_eq!(digest.buckets()[3].count, 2);
        assert_eq!(digest.whole().hash, 0xdead_beef ^ 0x1234);
        digest.remove(Some(b));
        assert_eq!(digest, only_a);
        digest.remove(Some(a));
        assert_eq!(digest, ActiveDigest::default());
        digest.add(None);
        assert_eq!(digest, ActiveDigest::default());
    }
}
