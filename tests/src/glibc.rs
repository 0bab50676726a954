//! Which glibc symbol versions an ELF binary needs: the check behind "the packaged
//! binaries load on the FunctionGraph runtime's older glibc" (tests/tests/package.rs).
//!
//! Reads the dynamic symbol table with `readelf --dyn-syms --wide` (binutils): every
//! undefined symbol bound to a version shows as `name@GLIBC_2.x (n)`. That is the same
//! information the dynamic loader checks against `.gnu.version_r` at start-up.

use std::path::Path;

/// A glibc version such as 2.17, compared numerically (2.9 < 2.17).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        let mut it = s.split('.').map(|p| p.parse::<u32>());
        let major = it.next()?.ok()?;
        let minor = it.next()?.ok()?;
        let patch = match it.next() {
            Some(p) => p.ok()?,
            None => 0,
        };
        it.next().is_none().then_some(Version(major, minor, patch))
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.2 {
            0 => write!(f, "{}.{}", self.0, self.1),
            p => write!(f, "{}.{}.{p}", self.0, self.1),
        }
    }
}

/// `(symbol, version)` for every `symbol@GLIBC_x.y` in `readelf --dyn-syms --wide` output.
pub fn glibc_symbols(readelf_dyn_syms: &str) -> Vec<(String, Version)> {
    let mut out: Vec<(String, Version)> = readelf_dyn_syms
        .lines()
        .filter_map(|l| {
            // ... UND name@GLIBC_2.17 (3)   -- `@@` marks a definition, not a need
            let field = l.split_whitespace().find(|w| w.contains("@GLIBC_"))?;
            let (name, ver) = field.split_once("@GLIBC_")?;
            let name = name.trim_end_matches('@');
            Some((name.to_string(), Version::parse(ver)?))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The symbols of `binary` that need a glibc newer than `floor` (empty: it loads there).
pub fn newer_than(binary: &Path, floor: Version) -> Vec<(String, Version)> {
    let o = crate::tools::run(
        "readelf",
        "binutils",
        &["--dyn-syms", "--wide", binary.to_str().expect("utf-8 path")],
        Path::new("."),
    );
    assert!(
        o.status.success(),
        "readelf {}: {}",
        binary.display(),
        crate::tools::text(&o)
    );
    let syms = glibc_symbols(&String::from_utf8_lossy(&o.stdout));
    assert!(
        !syms.is_empty(),
        "{} references no GLIBC_ symbol: not a dynamically linked glibc binary?",
        binary.display()
    );
    syms.into_iter().filter(|(_, v)| *v > floor).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically_and_symbols_parse() {
        assert!(Version::parse("2.9").unwrap() < Version::parse("2.17").unwrap());
        assert!(Version::parse("2.2.5").unwrap() < Version::parse("2.3").unwrap());
        assert_eq!(Version::parse("2.x"), None);
        let out = "\
   5: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND getrandom@GLIBC_2.25 (7)
   6: 0000000000000000     0 FUNC    WEAK   DEFAULT  UND __cxa_finalize@GLIBC_2.2.5 (2)
   7: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND memcpy@GLIBC_2.14 (4)
   8: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND malloc
";
        assert_eq!(
            glibc_symbols(out),
            vec![
                ("__cxa_finalize".to_string(), Version(2, 2, 5)),
                ("getrandom".to_string(), Version(2, 25, 0)),
                ("memcpy".to_string(), Version(2, 14, 0)),
            ]
        );
    }
}
