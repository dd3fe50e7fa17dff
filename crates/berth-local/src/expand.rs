//! Kubernetes' dependent environment variable expansion: `$(VAR)` becomes the value of `VAR`
//! when it is defined, `$$` becomes `$`, and an undefined reference stays as written.

/// Expands `$(VAR)` references in `text` with `lookup`.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = reference(after) {
            match lookup(name) {
                Some(value) => out.push_str(&value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// `(NAME)rest` split into `NAME` and `rest`.
fn reference(text: &str) -> Option<(&str, &str)> {
    let inner = text.strip_prefix('(')?;
    let end = inner.find(')')?;
    Some((&inner[..end], &inner[end + 1..]))
}

/// Expands an env list in order: each value may refer to variables defined before it.
pub fn expand_env(env: &[(String, String)]) -> Vec<(String, String)> {
    let mut done: Vec<(String, String)> = Vec::with_capacity(env.len());
    for (name, value) in env {
        let expanded = expand(value, &|v| lookup_in(&done, v));
        done.retain(|(n, _)| n != name);
        done.push((name.clone(), expanded));
    }
    done
}

/// The value of `name` in an env list.
pub fn lookup_in(env: &[(String, String)], name: &str) -> Option<String> {
    env.iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        vec![("A".into(), "1".into()), ("B".into(), "x$(A)y".into())]
    }

    #[test]
    fn references_to_defined_variables_expand() {
        let env = expand_env(&env());
        assert_eq!(lookup_in(&env, "B").as_deref(), Some("x1y"));
        let text = expand("--id=$(B) $(NOPE) $$(A) $x", &|n| lookup_in(&env, n));
        assert_eq!(text, "--id=x1y $(NOPE) $(A) $x");
    }

    #[test]
    fn later_variables_are_not_visible_to_earlier_ones() {
        let env = expand_env(&[("A".into(), "$(B)".into()), ("B".into(), "2".into())]);
        assert_eq!(lookup_in(&env, "A").as_deref(), Some("$(B)"));
    }
}
