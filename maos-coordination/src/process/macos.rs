//! macOS: process facts through `sysctl` and `proc_pidinfo` (libc), the only unsafe code of
//! the crate — each call is a plain C call into a buffer it owns, checked before use.
#![allow(unsafe_code)]

use super::{Fact, ProcessFacts};

/// macOS: `kern.boottime` for the boot, `proc_pidinfo(PROC_PIDTBSDINFO)` for a process's
/// start time (microseconds since the epoch), the node name for the host.
#[derive(Debug, Clone, Copy)]
pub struct Darwin;

impl ProcessFacts for Darwin {
    fn host_name(&self) -> Option<String> {
        let name = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        (!name.is_empty()).then_some(name)
    }

    fn boot_id(&self) -> Option<String> {
        let mut mib = [libc::CTL_KERN, libc::KERN_BOOTTIME];
        let mut boot = libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        let mut size = std::mem::size_of::<libc::timeval>();
        // SAFETY: `mib` names a sysctl whose value is one `timeval`; `boot` and `size`
        // describe a buffer of exactly that size, owned here; nothing is written back.
        let rc = unsafe {
            libc::sysctl(
                mib.as_mut_ptr(),
                2,
                (&raw mut boot).cast(),
                &mut size,
                std::ptr::null_mut(),
                0,
            )
        };
        (rc == 0 && size == std::mem::size_of::<libc::timeval>() && boot.tv_sec > 0)
            .then(|| format!("boottime-{}.{:06}", boot.tv_sec, boot.tv_usec))
    }

    fn pid_namespace(&self) -> Option<u64> {
        None // macOS has no PID namespaces
    }

    fn start_time(&self, pid: u32) -> Fact<u64> {
        let Ok(pid) = i32::try_from(pid) else {
            return Fact::Unknown;
        };
        // SAFETY: an all-zero `proc_bsdinfo` is a valid value of that plain C struct.
        let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::proc_bsdinfo>();
        let Ok(size_c) = i32::try_from(size) else {
            return Fact::Unknown;
        };
        // SAFETY: `info` is a buffer of `size` bytes owned here, the size PROC_PIDTBSDINFO
        // fills; the return value says how many bytes were written.
        let written = unsafe {
            libc::proc_pidinfo(
                pid,
                libc::PROC_PIDTBSDINFO,
                0,
                (&raw mut info).cast(),
                size_c,
            )
        };
        if written == size_c {
            return Fact::Known(info.pbi_start_tvsec * 1_000_000 + info.pbi_start_tvusec);
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ESRCH) => Fact::Absent,
            // EPERM (another user's process) and anything else: cannot be told.
            _ => Fact::Unknown,
        }
    }
}
