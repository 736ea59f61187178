//! Who a process runs as: the `user` of a Spawn request, resolved to a uid,
//! a gid and a home directory with the guest's `/etc/passwd`.
//!
//! A user is one of:
//! - digits: a uid; the gid and home come from its `/etc/passwd` entry, or
//!   are the same number and `/` when it has none;
//! - `uid:gid`, both digits: exactly those ids; the home as above;
//! - a name: its `/etc/passwd` entry. `root` is 0:0 even without one.
//!
//! Anything else is an error that names the user: never a silent root.

/// The file names are looked up in.
pub const PASSWD: &str = "/etc/passwd";

/// The ids and home directory a process runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
    /// `HOME` for the process, unless the request sets it.
    pub home: Vec<u8>,
}

/// The home of an id without an `/etc/passwd` entry.
const NO_HOME: &[u8] = b"/";

/// Resolves `user` with the guest's [`PASSWD`]; a missing or unreadable
/// file is an empty one (names other than `root` are then unknown).
pub fn lookup(user: &[u8]) -> Result<Account, String> {
    let passwd = std::fs::read(PASSWD).unwrap_or_default();
    resolve(user, &passwd)
}

/// Resolves `user` (see the module docs) with `passwd`, the contents of an
/// `/etc/passwd`.
pub fn resolve(user: &[u8], passwd: &[u8]) -> Result<Account, String> {
    let shown = String::from_utf8_lossy(user);
    let number = |digits: &[u8]| {
        parse_id(digits).ok_or_else(|| {
            let digits = String::from_utf8_lossy(digits);
            format!(
                "user '{shown}': id {digits} is out of range (0 to {})",
                u32::MAX - 1
            )
        })
    };
    let home_of = |uid: u32| {
        entries(passwd)
            .find(|e| e.uid == uid)
            .map_or(NO_HOME.to_vec(), |e| e.home.to_vec())
    };
    if is_digits(user) {
        let uid = number(user)?;
        return Ok(match entries(passwd).find(|e| e.uid == uid) {
            Some(entry) => entry.account(),
            None => Account {
                uid,
                gid: uid,
                home: NO_HOME.to_vec(),
            },
        });
    }
    if let Some((uid, gid)) = split_ids(user) {
        let uid = number(uid)?;
        let gid = number(gid)?;
        let home = home_of(uid);
        return Ok(Account { uid, gid, home });
    }
    let entry = entries(passwd).find(|e| e.name == user);
    if user == b"root" {
        let home = entry.map_or(b"/root".to_vec(), |e| e.home.to_vec());
        return Ok(Account {
            uid: 0,
            gid: 0,
            home,
        });
    }
    entry
        .map(|e| e.account())
        .ok_or_else(|| format!("unknown user '{shown}': not in {PASSWD}, and not a uid or uid:gid"))
}

/// The fields of one `/etc/passwd` line that matter here.
struct Entry<'a> {
    name: &'a [u8],
    uid: u32,
    gid: u32,
    home: &'a [u8],
}

impl Entry<'_> {
    fn account(&self) -> Account {
        Account {
            uid: self.uid,
            gid: self.gid,
            home: self.home.to_vec(),
        }
    }
}

/// The well-formed entries of `passwd`; other lines are skipped.
fn entries(passwd: &[u8]) -> impl Iterator<Item = Entry<'_>> {
    passwd.split(|&b| b == b'\n').filter_map(parse_entry)
}

/// `name:password:uid:gid:gecos:home:shell`; an empty home is `/`.
fn parse_entry(line: &[u8]) -> Option<Entry<'_>> {
    let fields: Vec<&[u8]> = line.split(|&b| b == b':').collect();
    let [name, _, uid, gid, _, home, _] = fields[..] else {
        return None;
    };
    if name.is_empty() {
        return None;
    }
    Some(Entry {
        name,
        uid: parse_id(uid)?,
        gid: parse_id(gid)?,
        home: if home.is_empty() { NO_HOME } else { home },
    })
}

fn is_digits(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(u8::is_ascii_digit)
}

/// `uid:gid` when both sides are digits.
fn split_ids(user: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = user.iter().position(|&b| b == b':')?;
    let (uid, gid) = (&user[..colon], &user[colon + 1..]);
    (is_digits(uid) && is_digits(gid)).then_some((uid, gid))
}

/// A decimal id. `u32::MAX` is not one: to setuid/setgid it means "leave
/// unchanged".
fn parse_id(digits: &[u8]) -> Option<u32> {
    if !is_digits(digits) {
        return None;
    }
    let id: u32 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    (id != u32::MAX).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/sh\n\
        # a comment, skipped\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        broken:x:notanumber:5:::\n\
        alice:x:1000:100:Alice:/home/alice:/bin/sh\n\
        nohome:x:1001:1001:::/bin/sh\n\
        nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";

    fn account(uid: u32, gid: u32, home: &str) -> Result<Account, String> {
        Ok(Account {
            uid,
            gid,
            home: home.as_bytes().to_vec(),
        })
    }

    #[test]
    fn names_come_from_passwd() {
        assert_eq!(resolve(b"alice", PASSWD), account(1000, 100, "/home/alice"));
        assert_eq!(
            resolve(b"nobody", PASSWD),
            account(65534, 65534, "/nonexistent")
        );
        assert_eq!(resolve(b"nohome", PASSWD), account(1001, 1001, "/"));
        assert_eq!(resolve(b"root", PASSWD), account(0, 0, "/root"));
    }

    #[test]
    fn root_needs_no_passwd() {
        assert_eq!(resolve(b"root", b""), account(0, 0, "/root"));
        assert_eq!(resolve(b"0", b""), account(0, 0, "/"));
    }

    #[test]
    fn uids_take_gid_and_home_from_passwd_when_listed() {
        assert_eq!(resolve(b"1000", PASSWD), account(1000, 100, "/home/alice"));
        assert_eq!(resolve(b"4242", PASSWD), account(4242, 4242, "/"));
        assert_eq!(resolve(b"1000:7", PASSWD), account(1000, 7, "/home/alice"));
        assert_eq!(resolve(b"4242:0", PASSWD), account(4242, 0, "/"));
        assert_eq!(resolve(b"007", b""), account(7, 7, "/"));
    }

    #[test]
    fn unknown_users_are_errors_that_name_them() {
        for user in [
            &b"nosuchuser"[..],
            b"broken",
            b"",
            b"1000:",
            b":5",
            b"a:1",
            b"1:2:3",
        ] {
            let err = resolve(user, PASSWD).unwrap_err();
            let shown = String::from_utf8_lossy(user);
            assert!(err.contains(&format!("'{shown}'")), "{err}");
        }
        let err = resolve(b"alice", b"").unwrap_err();
        assert!(err.contains("unknown user 'alice'"), "{err}");
    }

    #[test]
    fn ids_out_of_range_are_errors() {
        for user in [&b"4294967295"[..], b"4294967296", b"1:99999999999"] {
            let err = resolve(user, PASSWD).unwrap_err();
            assert!(err.contains("out of range"), "{err}");
        }
        assert_eq!(
            resolve(b"4294967294", b""),
            account(u32::MAX - 1, u32::MAX - 1, "/")
        );
    }
}
