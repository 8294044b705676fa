//! Which process holds a run, and whether that process still lives.
//!
//! A lease names its holder as `host/pid/start@boot`: the host name, the
//! process id, the process's start time in clock ticks since boot (field 22
//! of `/proc/<pid>/stat`), and the first 8 hex digits of the kernel's boot
//! id. The pid alone is not enough: pids are reused, and a crashed runner's
//! pid may belong to an unrelated process by the time anyone looks. The
//! start time tells the two apart, so a lease can be judged stale without a
//! heartbeat: on the same host, the holder is alive exactly when a process
//! with its pid and start time exists. Start times count from boot, so after
//! a reboot an early process could match a holder from before it; the boot
//! id tells the boots apart (a holder from another boot is dead). Owners
//! written without a boot id (`host/pid/start`, before it was added) are
//! judged by pid and start time alone. A holder on another host cannot be
//! checked from here.

use std::fmt;
use std::sync::OnceLock;

/// A process as leases name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessIdentity {
    pub host: String,
    pub pid: u32,
    /// Clock ticks since boot at which the process started; 0 where the
    /// platform does not say (then liveness cannot be judged).
    pub start: u64,
    /// The first 8 hex digits of the boot id of the host's boot the
    /// process ran in; `None` where unknown or not recorded.
    pub boot: Option<String>,
}

/// Whether the process holding a lease is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// It runs on this host: the run is in its hands.
    Alive,
    /// It ran on this host and is gone (or its pid now belongs to another
    /// process): the run was orphaned and may be taken over.
    Dead,
    /// It runs (or ran) on another host, or the owner cannot be read:
    /// nothing can be said from here.
    Unknown,
}

impl ProcessIdentity {
    /// This process's identity as a lease owner: `host/pid/start`.
    pub fn current() -> String {
        static CURRENT: OnceLock<String> = OnceLock::new();
        CURRENT.get_or_init(|| Self::of_this_process().to_string()).clone()
    }

    /// This process's identity, read afresh.
    pub fn of_this_process() -> Self {
        Self { host: hostname(), pid: std::process::id(), start: start_time("self").unwrap_or(0), boot: boot_id() }
    }

    /// Reads `host/pid/start[@boot]` back; `None` for anything else.
    pub fn parse(owner: &str) -> Option<Self> {
        // Split from the right: the numbers and the boot id never hold a
        // slash.
        let mut parts = owner.rsplitn(3, '/');
        let last = parts.next()?;
        let (start, boot) = match last.split_once('@') {
            Some((start, boot)) if is_boot_id(boot) => (start, Some(boot.to_owned())),
            Some(_) => return None,
            None => (last, None),
        };
        let start = start.parse().ok()?;
        let pid = parts.next()?.parse().ok()?;
        let host = parts.next().filter(|host| !host.is_empty())?;
        Some(Self { host: host.to_string(), pid, start, boot })
    }
}

impl fmt::Display for ProcessIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.host, self.pid, self.start)?;
        match &self.boot {
            Some(boot) => write!(f, "@{boot}"),
            None => Ok(()),
        }
    }
}

fn is_boot_id(text: &str) -> bool {
    text.len() == 8 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The first 8 hex digits of this boot's id, if the kernel says.
fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let digits: String = id.chars().filter(char::is_ascii_hexdigit).take(8).collect();
    is_boot_id(&digits).then_some(digits)
}

/// Whether the process named by `owner` (`host/pid/start`) still runs.
///
/// Same host: alive iff a process with that pid exists and started at the
/// recorded time, so a reused pid reads as dead. Another host, an owner
/// that does not parse, or a platform without `/proc`: unknown. Hosts are
/// told apart by name, so containers sharing a host name but not a pid
/// namespace would be misjudged; give them distinct host names.
pub fn owner_liveness(owner: &str) -> Liveness {
    let Some(identity) = ProcessIdentity::parse(owner) else {
        return Liveness::Unknown;
    };
    if identity.host != hostname() {
        return Liveness::Unknown;
    }
    if start_time("self").is_none() {
        // No /proc here: the absence of the owner's entry proves nothing.
        return Liveness::Unknown;
    }
    if let (Some(held_in), Some(now)) = (&identity.boot, boot_id())
        && *held_in != now
    {
        // Every process of an earlier boot is gone.
        return Liveness::Dead;
    }
    match start_time(&identity.pid.to_string()) {
        Some(start) if identity.start != 0 && start == identity.start => Liveness::Alive,
        Some(_) if identity.start == 0 => Liveness::Unknown,
        _ => Liveness::Dead,
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Field 22 (`starttime`) of `/proc/<pid>/stat`, if that process exists.
fn start_time(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// The start time from a `/proc/<pid>/stat` line, or `None` for a process
/// that has exited (a zombie not yet reaped by its parent still has an
/// entry: killed with SIGKILL, it must count as gone). Field 2, the command
/// name, is in parentheses and may itself hold spaces and parentheses, so
/// fields are counted from the last `)`: what follows is field 3 onwards.
fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_ascii_whitespace();
    if matches!(fields.next(), Some("Z" | "X" | "x")) {
        return None;
    }
    fields.nth(22 - 4)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_time_is_found_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (odd) name (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200";
        assert_eq!(parse_start_time(stat), Some(987_654));
        assert_eq!(parse_start_time("4242 (short) S 1"), None);
        let zombie = "4242 (gone) Z 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200";
        assert_eq!(parse_start_time(zombie), None, "an exited process not yet reaped is gone");
    }

    #[test]
    fn identities_read_back() {
        let identity = ProcessIdentity { host: "box.example".into(), pid: 17, start: 99, boot: None };
        assert_eq!(identity.to_string(), "box.example/17/99");
        assert_eq!(ProcessIdentity::parse("box.example/17/99"), Some(identity.clone()));
        let booted = ProcessIdentity { boot: Some("0a1b2c3d".into()), ..identity };
        assert_eq!(booted.to_string(), "box.example/17/99@0a1b2c3d");
        assert_eq!(ProcessIdentity::parse("box.example/17/99@0a1b2c3d"), Some(booted));
        for bad in
            ["", "box/17", "/17/99", "box/x/99", "box/17/-1", "box/17/99@", "box/17/99@xyz", "box/17/99@0a1b2c3d4"]
        {
            assert_eq!(ProcessIdentity::parse(bad), None, "{bad}");
        }
        assert_eq!(ProcessIdentity::parse(&ProcessIdentity::current()), Some(ProcessIdentity::of_this_process()));
    }
}
