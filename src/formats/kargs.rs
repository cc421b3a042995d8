//! Kernel command lines, with ostree's editing rules.
//!
//! Arguments are separated by spaces; double quotes group spaces into one
//! argument (`foo="a b"`) and are kept verbatim. The key of an argument is
//! what stands before its first `=`.

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Kargs {
    args: Vec<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct KargsError(pub String);

impl std::fmt::Display for KargsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for KargsError {}

fn key_of(arg: &str) -> &str {
    arg.split_once('=').map(|(k, _)| k).unwrap_or(arg)
}

/// Split a command line into arguments, keeping quotes.
pub fn split(cmdline: &str) -> Result<Vec<String>, KargsError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c.is_ascii_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if quoted {
        return Err(KargsError(format!(
            "unbalanced double quote in kernel command line: {cmdline:?}"
        )));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

impl Kargs {
    pub fn parse(cmdline: &str) -> Result<Self, KargsError> {
        Ok(Self {
            args: split(cmdline)?,
        })
    }

    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The value of the first argument named `key` (None when absent; `Some("")`
    /// when present without `=`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|a| key_of(a) == key)
            .map(|a| a.split_once('=').map(|(_, v)| v).unwrap_or(""))
    }

    /// Append an argument, even if its key is already present.
    pub fn append(&mut self, arg: &str) -> Result<(), KargsError> {
        check_arg(arg)?;
        self.args.push(arg.to_string());
        Ok(())
    }

    /// `key=value` sets the key to that single value: the first occurrence is
    /// replaced in place, other occurrences dropped; an absent key is
    /// appended (libostree's `replace_take`, used by `deploy --karg`).
    pub fn replace(&mut self, arg: &str) -> Result<(), KargsError> {
        check_arg(arg)?;
        let key = key_of(arg);
        match self.args.iter().position(|a| key_of(a) == key) {
            Some(pos) => {
                self.args[pos] = arg.to_string();
                let mut i = 0;
                self.args.retain(|a| {
                    let keep = i <= pos || key_of(a) != key;
                    i += 1;
                    keep
                });
            }
            None => self.args.push(arg.to_string()),
        }
        Ok(())
    }

    /// `kargs --replace`: `key=old=new` replaces the one occurrence
    /// `key=old` when it exists; otherwise the argument is taken as
    /// `key=value` and handled as [`Kargs::replace`] (so `root=LABEL=x` works).
    pub fn replace_value(&mut self, arg: &str) -> Result<(), KargsError> {
        check_arg(arg)?;
        let key = key_of(arg);
        if let Some((_, rest)) = arg.split_once('=') {
            if let Some((old, new)) = rest.split_once('=') {
                let want = format!("{key}={old}");
                if let Some(pos) = self.args.iter().position(|a| *a == want) {
                    self.args[pos] = format!("{key}={new}");
                    return Ok(());
                }
            }
        }
        self.replace(arg)
    }

    /// `key=value` deletes that exact argument; `key` deletes the key when it
    /// has exactly one occurrence.
    pub fn delete(&mut self, arg: &str) -> Result<(), KargsError> {
        check_arg(arg)?;
        if arg.contains('=') {
            let pos = self
                .args
                .iter()
                .position(|a| a == arg)
                .ok_or_else(|| KargsError(format!("no kernel argument {arg:?} to delete")))?;
            self.args.remove(pos);
            return Ok(());
        }
        let hits: Vec<usize> = self
            .args
            .iter()
            .enumerate()
            .filter(|(_, a)| key_of(a) == arg)
            .map(|(i, _)| i)
            .collect();
        match hits.as_slice() {
            [] => Err(KargsError(format!("no kernel argument {arg:?} to delete"))),
            [one] => {
                self.args.remove(*one);
                Ok(())
            }
            _ => Err(KargsError(format!(
                "kernel argument {arg:?} has {} values; name the one to delete as {arg}=VALUE",
                hits.len()
            ))),
        }
    }

    /// Remove every argument named `key`.
    pub fn remove_key(&mut self, key: &str) {
        self.args.retain(|a| key_of(a) != key);
    }

    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }

    pub fn to_cmdline(&self) -> String {
        self.args.join(" ")
    }
}

fn check_arg(arg: &str) -> Result<(), KargsError> {
    let parts = split(arg)?;
    if parts.len() != 1 || parts[0] != arg {
        return Err(KargsError(format!(
            "{arg:?} is not a single kernel argument (quote values with spaces: key=\"a b\")"
        )));
    }
    if key_of(arg).is_empty() {
        return Err(KargsError(format!("kernel argument {arg:?} has an empty key")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_quotes() {
        let k = Kargs::parse(r#"root=LABEL=root  quiet foo="a b=c" x"#).unwrap();
        assert_eq!(k.args(), &["root=LABEL=root", "quiet", r#"foo="a b=c""#, "x"]);
        assert_eq!(k.get("root"), Some("LABEL=root"));
        assert_eq!(k.get("quiet"), Some(""));
        assert!(Kargs::parse("a=\"b").is_err());
    }

    #[test]
    fn replace_append_delete() {
        let mut k = Kargs::parse("a=1 b c=3 a=2").unwrap();
        k.replace("a=9").unwrap();
        assert_eq!(k.to_cmdline(), "a=9 b c=3");
        k.replace("d=4").unwrap();
        k.append("c=5").unwrap();
        assert_eq!(k.to_cmdline(), "a=9 b c=3 d=4 c=5");
        assert!(k.delete("c").is_err(), "two values must be named");
        k.delete("c=3").unwrap();
        k.delete("c").unwrap();
        k.replace_value("d=4=44").unwrap();
        assert_eq!(k.to_cmdline(), "a=9 b d=44");
        k.replace_value("root=LABEL=root").unwrap();
        assert_eq!(k.get("root"), Some("LABEL=root"));
        k.replace("root=UUID=1").unwrap();
        assert_eq!(k.get("root"), Some("UUID=1"));
        assert!(k.delete("zz").is_err());
        assert!(k.append("two words").is_err());
        k.append(r#"q="x y""#).unwrap();
        assert_eq!(k.get("q"), Some(r#""x y""#));
    }
}
