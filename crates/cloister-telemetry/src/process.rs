//! The process metrics Prometheus' client libraries export under the standard names
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_virtual_memory_bytes`,
//! `process_open_fds`, `process_max_fds`, `process_start_time_seconds`), read from `/proc/self`
//! at each scrape. Off Linux, or when a file cannot be read, the metric is left out of that
//! scrape rather than reported as a made-up number.

use std::sync::Mutex;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, IntGauge};

use crate::MetricError;

/// Linux's `USER_HZ`, used only when `/proc/self/auxv` does not say (`AT_CLKTCK`): the kernel
/// reports times in `/proc` in these units, 100 on every architecture Cloister builds for.
const DEFAULT_CLOCK_TICKS: u64 = 100;

/// What one read of `/proc/self` found; `None` where a file could not be read or parsed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Snapshot {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<i64>,
    virtual_bytes: Option<i64>,
    open_fds: Option<i64>,
    max_fds: Option<i64>,
    start_time_seconds: Option<f64>,
}

/// The process collector: one per registry.
pub struct ProcessCollector {
    descs: Vec<Desc>,
    cpu: Counter,
    /// The CPU seconds already added to `cpu` (a counter only goes up by increments).
    cpu_counted: Mutex<f64>,
    resident: IntGauge,
    virtual_memory: IntGauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
    start_time: Gauge,
}

impl std::fmt::Debug for ProcessCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessCollector").finish_non_exhaustive()
    }
}

impl ProcessCollector {
    /// The collector, with every metric defined.
    ///
    /// # Errors
    /// [`MetricError`] never in practice (the names are static and valid).
    pub fn new() -> Result<Self, MetricError> {
        let int = |name: &str, help: &str| {
            IntGauge::new(name, help).map_err(|e| MetricError::new(name, e))
        };
        let cpu_name = "process_cpu_seconds_total";
        let cpu = Counter::new(cpu_name, "Total user and system CPU time spent, in seconds")
            .map_err(|e| MetricError::new(cpu_name, e))?;
        let start_name = "process_start_time_seconds";
        let start_time =
            Gauge::new(start_name, "Start time of the process since the Unix epoch, in seconds")
                .map_err(|e| MetricError::new(start_name, e))?;
        let resident = int("process_resident_memory_bytes", "Resident memory size, in bytes")?;
        let virtual_memory = int("process_virtual_memory_bytes", "Virtual memory size, in bytes")?;
        let open_fds = int("process_open_fds", "Open file descriptors")?;
        let max_fds = int("process_max_fds", "The limit on open file descriptors (soft)")?;
        let mut descs = Vec::new();
        for desc in cpu
            .desc()
            .into_iter()
            .chain(start_time.desc())
            .chain(resident.desc())
            .chain(virtual_memory.desc())
            .chain(open_fds.desc())
            .chain(max_fds.desc())
        {
            descs.push(desc.clone());
        }
        Ok(ProcessCollector {
            descs,
            cpu,
            cpu_counted: Mutex::new(0.0),
            resident,
            virtual_memory,
            open_fds,
            max_fds,
            start_time,
        })
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let snapshot = read_self();
        let mut families = Vec::new();
        if let Some(seconds) = snapshot.cpu_seconds {
            let mut counted = self.cpu_counted.lock().unwrap_or_else(|p| p.into_inner());
            if seconds > *counted {
                self.cpu.inc_by(seconds - *counted);
                *counted = seconds;
            }
            families.extend(self.cpu.collect());
        }
        if let Some(start) = snapshot.start_time_seconds {
            self.start_time.set(start);
            families.extend(self.start_time.collect());
        }
        for (value, gauge) in [
            (snapshot.resident_bytes, &self.resident),
            (snapshot.virtual_bytes, &self.virtual_memory),
            (snapshot.open_fds, &self.open_fds),
            (snapshot.max_fds, &self.max_fds),
        ] {
            if let Some(value) = value {
                gauge.set(value);
                families.extend(gauge.collect());
            }
        }
        families
    }
}

/// Reads this process's numbers from `/proc`.
#[cfg(target_os = "linux")]
fn read_self() -> Snapshot {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let ticks = std::fs::read("/proc/self/auxv")
        .ok()
        .and_then(|auxv| clock_ticks(&auxv))
        .unwrap_or(DEFAULT_CLOCK_TICKS);
    let stat = read("/proc/self/stat").and_then(|text| parse_stat(&text));
    let boot = read("/proc/stat").and_then(|text| boot_time(&text));
    Snapshot {
        cpu_seconds: stat.map(|s| (s.utime + s.stime) as f64 / ticks as f64),
        resident_bytes: read("/proc/self/status").and_then(|text| resident_bytes(&text)),
        virtual_bytes: stat.and_then(|s| i64::try_from(s.vsize).ok()),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .and_then(|entries| i64::try_from(entries.count()).ok()),
        max_fds: read("/proc/self/limits").and_then(|text| max_open_files(&text)),
        start_time_seconds: stat
            .zip(boot)
            .map(|(s, boot)| boot as f64 + s.starttime as f64 / ticks as f64),
    }
}

/// Nothing to read off Linux: every process metric is left out.
#[cfg(not(target_os = "linux"))]
fn read_self() -> Snapshot {
    Snapshot::default()
}

/// The fields of `/proc/self/stat` used here (times in clock ticks, `vsize` in bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    utime: u64,
    stime: u64,
    starttime: u64,
    vsize: u64,
}

/// Parses `/proc/PID/stat`: the command name (field 2) is in parentheses and may contain
/// spaces and parentheses itself, so fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    // `rest` starts at field 3 (state): field N is at index N - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n.checked_sub(3)?)?.parse().ok() };
    Some(Stat { utime: field(14)?, stime: field(15)?, starttime: field(22)?, vsize: field(23)? })
}

/// `VmRSS` of `/proc/PID/status`, in bytes.
fn resident_bytes(status: &str) -> Option<i64> {
    let line = status.lines().find_map(|line| line.strip_prefix("VmRSS:"))?;
    let mut parts = line.split_whitespace();
    let kib: i64 = parts.next()?.parse().ok()?;
    (parts.next() == Some("kB")).then_some(kib.checked_mul(1024)?)
}

/// The soft limit of "Max open files" in `/proc/PID/limits` (`None` when unlimited).
fn max_open_files(limits: &str) -> Option<i64> {
    let line = limits.lines().find_map(|line| line.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// `btime` of `/proc/stat`: the boot time, Unix seconds.
fn boot_time(stat: &str) -> Option<u64> {
    stat.lines().find_map(|line| line.strip_prefix("btime "))?.trim().parse().ok()
}

/// `AT_CLKTCK` (17) from an auxiliary vector (`/proc/self/auxv`: native-endian word pairs).
fn clock_ticks(auxv: &[u8]) -> Option<u64> {
    const AT_CLKTCK: u64 = 17;
    let word = size_of::<usize>();
    let read = |bytes: &[u8]| -> Option<u64> {
        match word {
            8 => Some(u64::from_ne_bytes(bytes.try_into().ok()?)),
            4 => Some(u64::from(u32::from_ne_bytes(bytes.try_into().ok()?))),
            _ => None,
        }
    };
    auxv.chunks_exact(2 * word).find_map(|pair| {
        let (key, value) = pair.split_at(word);
        (read(key)? == AT_CLKTCK).then(|| read(value)).flatten().filter(|&ticks| ticks > 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with spaces and parentheses must not shift the fields.
        let text = "4242 (odd) name)) S 1 4242 4242 0 -1 4194560 2456 0 0 0 150 75 0 0 20 0 9 0 \
                    123456 987654321 3000 18446744073709551615 1 1 0 0 0 0 0 4096 17 3 0 0 0 0 0";
        let stat = parse_stat(text).unwrap();
        assert_eq!(stat, Stat { utime: 150, stime: 75, starttime: 123_456, vsize: 987_654_321 });
        assert_eq!(parse_stat("12 (truncated"), None);
        assert_eq!(parse_stat("12 (x) S 1 2"), None);
    }

    #[test]
    fn status_limits_and_boot_time_are_read_by_name() {
        let status = "Name:\tcloister\nVmPeak:\t  999 kB\nVmRSS:\t   2048 kB\nThreads:\t9\n";
        assert_eq!(resident_bytes(status), Some(2048 * 1024));
        assert_eq!(resident_bytes("VmRSS:\t12 pages\n"), None);
        assert_eq!(resident_bytes("Name: x\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(max_open_files(unlimited), None);
        assert_eq!(boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n"), Some(1_700_000_000));
    }

    #[test]
    fn clock_ticks_come_from_the_auxiliary_vector() {
        let word = size_of::<usize>();
        let mut auxv = Vec::new();
        for (key, value) in [(6usize, 4096usize), (17, 250), (0, 0)] {
            auxv.extend_from_slice(&key.to_ne_bytes());
            auxv.extend_from_slice(&value.to_ne_bytes());
        }
        assert_eq!(clock_ticks(&auxv), Some(250));
        assert_eq!(clock_ticks(&auxv[..2 * word]), None);
        assert_eq!(clock_ticks(&[1, 2, 3]), None);
    }

    proptest::proptest! {
        /// Whatever the files hold, reading them never panics.
        #[test]
        fn arbitrary_proc_files_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_stat(&text);
            let _ = resident_bytes(&text);
            let _ = max_open_files(&text);
            let _ = boot_time(&text);
            let _ = clock_ticks(&bytes);
        }

        /// A stat line of any command name and numbers reads back those numbers.
        #[test]
        fn stat_lines_read_back(name in "[ -~]{0,32}", utime in 0u64..1 << 40, stime in 0u64..1 << 40, start in 0u64..1 << 40, vsize in 0u64..1 << 50) {
            let line = format!(
                "7 ({name}) R 1 7 7 0 -1 0 0 0 0 0 {utime} {stime} 0 0 20 0 1 0 {start} {vsize} 100 0"
            );
            proptest::prop_assert_eq!(
                parse_stat(&line),
                Some(Stat { utime, stime, starttime: start, vsize })
            );
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads_sensibly() {
        let snapshot = read_self();
        assert!(snapshot.resident_bytes.unwrap() > 0);
        assert!(snapshot.open_fds.unwrap() >= 3);
        let start = snapshot.start_time_seconds.unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(start <= now + 1.0 && start > now - 86_400.0 * 365.0, "{start} vs {now}");
        assert!(snapshot.cpu_seconds.unwrap() >= 0.0);
    }
}
