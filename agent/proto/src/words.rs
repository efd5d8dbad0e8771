//! Splitting one line of arguments the way a shell would (quotes, no expansion): preload lines
//! and `berth fleet push --run '...'`.

use berth_runtime::{Error, Result};

/// Words of `line`: whitespace separates, '...' and "..." group (with no escapes inside).
pub fn shell_words(line: &str) -> Result<Vec<String>> {
    let (mut out, mut cur, mut quote, mut any) = (Vec::new(), String::new(), None, false);
    for c in line.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (_, c) => {
                cur.push(c);
                any = true;
            }
        }
    }
    if quote.is_some() {
        return Err(Error::invalid(format!("unclosed quote in {line:?}")));
    }
    if any {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(
            shell_words("  --name app  app:2 sh -c 'echo hi; sleep 1'").unwrap(),
            ["--name", "app", "app:2", "sh", "-c", "echo hi; sleep 1"]
        );
        assert_eq!(shell_words("a \"\" b''c").unwrap(), ["a", "", "bc"]);
        assert!(shell_words("a 'b").is_err());
        assert!(shell_words("").unwrap().is_empty());
    }
}
