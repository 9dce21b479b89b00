//! Memory in use from `/proc/meminfo`: total minus available. MemAvailable is the kernel's own
//! estimate of what can be given to a new workload without swapping (it counts reclaimable page
//! cache and slab), so "used" is what cannot be; the OpenTelemetry convention for
//! `system.memory.usage{system.memory.state="used"}` is the same figure.

use bakery_proto::v1::Memory;

/// Bytes in use: MemTotal - MemAvailable (0 rather than negative for a malformed reading).
pub fn used_bytes(memory: &Memory) -> u64 {
    memory.total_bytes.saturating_sub(memory.available_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_is_total_minus_available() {
        let cases = [
            // (total, available, free, buffers, cached, used)
            (8000, 6000, 2000, 500, 1500, 2000),
            (8000, 8000, 8000, 0, 0, 0),
            (8000, 9000, 0, 0, 0, 0),
        ];
        for (total, available, free, buffers, cached, used) in cases {
            let memory = Memory {
                total_bytes: total,
                available_bytes: available,
                free_bytes: free,
                buffers_bytes: buffers,
                cached_bytes: cached,
                ..Memory::default()
            };
            assert_eq!(used_bytes(&memory), used, "{memory:?}");
        }
    }
}
