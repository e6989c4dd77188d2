//! `memory_budget = "auto"`: a quarter of the memory the gateway may use,
//! which in a container is its cgroup's limit, not the host's RAM (the
//! host's quarter in a 512 MiB container invites the OOM killer).

const MIB: u64 = 1 << 20;

/// The smallest memory budget accepted: a few default parts.
pub const MIN_MEMORY_BUDGET: u64 = 32 * MIB;

/// A quarter of the memory this process may use (at least
/// [`MIN_MEMORY_BUDGET`]): the host's, or its cgroup's limit if lower.
pub fn default_memory_budget() -> u64 {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let host = read("/proc/meminfo")
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(4 << 30, |kib| kib << 10);
    let limit = read("/proc/self/cgroup")
        .and_then(|cgroups| cgroup_limit(&cgroups, "/sys/fs/cgroup", &read));
    (limit.unwrap_or(host).min(host) / 4).max(MIN_MEMORY_BUDGET)
}

/// The memory limit of the cgroup `/proc/self/cgroup` names, under the
/// cgroup file system at `root`: v2's `memory.max`, or v1's
/// `memory.limit_in_bytes`; `None` when there is none ("max", or v1's
/// near-2^63 for no limit). Inside a container's cgroup namespace the
/// path is `/`, the file at `root` itself.
pub fn cgroup_limit(
    cgroups: &str,
    root: &str,
    read: &dyn Fn(&str) -> Option<String>,
) -> Option<u64> {
    let number = |text: String| text.trim().parse::<u64>().ok().filter(|&n| n < 1 << 62);
    for line in cgroups.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let path = path.trim_end_matches('/');
        let found = match controllers {
            "" => read(&format!("{root}{path}/memory.max"))
                .or_else(|| read(&format!("{root}/memory.max"))),
            c if c.split(',').any(|c| c == "memory") => {
                read(&format!("{root}/memory{path}/memory.limit_in_bytes"))
                    .or_else(|| read(&format!("{root}/memory/memory.limit_in_bytes")))
            }
            _ => continue,
        };
        if let Some(limit) = found.and_then(number) {
            return Some(limit);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn files(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |path| map.get(path).cloned()
    }

    /// Read from sample files: a v2 container limited to 512 MiB, one
    /// without a limit, a v1 memory cgroup, and v1 without a limit.
    #[test]
    fn the_cgroup_limit_is_read_in_v1_and_v2() {
        let v2 = files(&[("/sys/fs/cgroup/memory.max", "536870912\n")]);
        assert_eq!(
            cgroup_limit("0::/\n", "/sys/fs/cgroup", &v2),
            Some(512 * MIB)
        );
        let nested = files(&[("/cg/system.slice/gw.service/memory.max", "1073741824\n")]);
        assert_eq!(
            cgroup_limit("0::/system.slice/gw.service\n", "/cg", &nested),
            Some(1024 * MIB)
        );
        let unlimited = files(&[("/sys/fs/cgroup/memory.max", "max\n")]);
        assert_eq!(cgroup_limit("0::/\n", "/sys/fs/cgroup", &unlimited), None);
        let v1 = files(&[(
            "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes",
            "268435456\n",
        )]);
        let cgroups =
            "12:cpu,cpuacct:/docker/abc\n9:memory:/docker/abc\n1:name=systemd:/docker/abc\n";
        assert_eq!(
            cgroup_limit(cgroups, "/sys/fs/cgroup", &v1),
            Some(256 * MIB)
        );
        let v1_unlimited = files(&[(
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "9223372036854771712\n",
        )]);
        assert_eq!(
            cgroup_limit("9:memory:/\n", "/sys/fs/cgroup", &v1_unlimited),
            None
        );
        assert_eq!(cgroup_limit("", "/sys/fs/cgroup", &v1), None);
    }
}
