//! Where a producer puts a key: the partitioners of Kafka's clients, so that records that do not
//! come from a topic (a captured table's rows) meet the topic's records of the same key in the
//! same state partition of a join.
//!
//! The hashes are librdkafka's own functions (the library the `rdkafka` crate bundles), not a
//! copy: `murmur2` is the Java client's and Kafka Streams' default placement, `consistent`
//! (CRC32) is librdkafka's default (`consistent_random`) for keyed records, which Python's
//! `confluent-kafka`, Go's and .NET's clients inherit.

use serde::Deserialize;

/// How keys are placed on partitions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Partitioner {
    /// `murmur2(key) & 0x7fffffff % partitions`: Java clients, Kafka Streams, librdkafka's
    /// `murmur2` / `murmur2_random`.
    #[default]
    Murmur2,
    /// `crc32(key) % partitions`: librdkafka's default (`consistent_random`) and `consistent`.
    Consistent,
}

impl Partitioner {
    /// The partition of `key` among `partitions` (at least 1). A record without a key goes to
    /// partition 0: it has no partner to meet.
    pub fn partition(self, key: Option<&[u8]>, partitions: i32) -> i32 {
        let Some(key) = key else { return 0 };
        if partitions <= 1 {
            return 0;
        }
        let hash = match self {
            Partitioner::Murmur2 => rdkafka::bindings::rd_kafka_msg_partitioner_murmur2,
            Partitioner::Consistent => rdkafka::bindings::rd_kafka_msg_partitioner_consistent,
        };
        // SAFETY: both functions only hash `keylen` bytes at `key` (librdkafka's
        // rdkafka_msg.c); the topic and opaque pointers are not read, so null is fine.
        unsafe {
            hash(
                std::ptr::null(),
                key.as_ptr().cast(),
                key.len(),
                partitions,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_land_where_kafkas_clients_put_them() {
        // Java's DefaultPartitioner: Utils.toPositive(Utils.murmur2(key)) % n, with the
        // murmur2 values of Kafka's own UtilsTest ("21" -973932308, "abc" 479470107).
        let n = 1_000_000_007;
        assert_eq!(Partitioner::Murmur2.partition(Some(b"21"), n), (-973932308i32 & 0x7fffffff) % n);
        assert_eq!(Partitioner::Murmur2.partition(Some(b"abc"), n), 479470107 % n);
        // CRC-32 (IEEE) of "123456789" is 0xCBF43926, the standard check value.
        assert_eq!(Partitioner::Consistent.partition(Some(b"123456789"), n), (0xCBF43926u32 % n as u32) as i32);
        assert_eq!(Partitioner::Murmur2.partition(None, 6), 0);
        assert_eq!(Partitioner::Consistent.partition(Some(b"m1"), 1), 0);
        for key in [&b"m1"[..], b"tt0111161", b"{\"id\":\"7\"}"] {
            for partitioner in [Partitioner::Murmur2, Partitioner::Consistent] {
                assert!((0..6).contains(&partitioner.partition(Some(key), 6)));
            }
        }
    }
}
