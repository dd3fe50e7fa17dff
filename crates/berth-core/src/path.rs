//! Field paths such as `spec.parts[0].template.spec.containers[0].image`, read and written in a
//! JSON value tree. Seed-style numeric segments (`spec.parts.0.name`) index arrays too, and
//! `["a.b"]` quotes a key that contains dots.

use std::fmt;

use serde_json::Value;

/// One step of a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// A key of a mapping.
    Key(String),
    /// A position in a sequence.
    Index(usize),
}

/// A parsed field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPath(pub Vec<Segment>);

impl FieldPath {
    /// Parses a path.
    ///
    /// # Errors
    /// A message saying what is malformed.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut segments = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            rest = rest.strip_prefix('.').unwrap_or(rest);
            if let Some(inner) = rest.strip_prefix('[') {
                let close = inner
                    .find(']')
                    .ok_or_else(|| format!("unclosed '[' in path `{text}`"))?;
                segments.push(bracket_segment(&inner[..close], text)?);
                rest = &inner[close + 1..];
            } else {
                let end = rest.find(['.', '[']).unwrap_or(rest.len());
                let word = &rest[..end];
                if word.is_empty() {
                    return Err(format!("empty segment in path `{text}`"));
                }
                segments.push(match word.parse::<usize>() {
                    Ok(i) => Segment::Index(i),
                    Err(_) => Segment::Key(word.to_string()),
                });
                rest = &rest[end..];
            }
        }
        if segments.is_empty() {
            return Err("the path is empty".to_string());
        }
        Ok(Self(segments))
    }

    /// The value at this path, if every step exists.
    pub fn get<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        self.0.iter().try_fold(root, |node, segment| match segment {
            Segment::Key(k) => node.get(k),
            Segment::Index(i) => node.get(*i),
        })
    }

    /// Sets the value at this path. The parent must exist; the last key may be new.
    ///
    /// # Errors
    /// A message naming the first step that does not exist.
    pub fn set(&self, root: &mut Value, value: Value) -> Result<(), String> {
        let (last, parents) = self.0.split_last().expect("a parsed path has a segment");
        let mut node = root;
        for (depth, segment) in parents.iter().enumerate() {
            let here = FieldPath(self.0[..=depth].to_vec());
            node = match segment {
                Segment::Key(k) => node.get_mut(k),
                Segment::Index(i) => node.get_mut(*i),
            }
            .ok_or_else(|| format!("`{here}` does not exist"))?;
        }
        match (last, node) {
            (Segment::Key(k), Value::Object(map)) => {
                map.insert(k.clone(), value);
                Ok(())
            }
            (Segment::Index(i), Value::Array(items)) if *i < items.len() => {
                items[*i] = value;
                Ok(())
            }
            (Segment::Index(i), Value::Array(items)) => Err(format!(
                "`{self}` is out of range: the list has {} item(s), index {i}",
                items.len()
            )),
            _ => Err(format!(
                "the parent of `{self}` is not a {}",
                kind_name(last)
            )),
        }
    }
}

fn kind_name(segment: &Segment) -> &'static str {
    match segment {
        Segment::Key(_) => "mapping",
        Segment::Index(_) => "list",
    }
}

fn bracket_segment(inner: &str, text: &str) -> Result<Segment, String> {
    let quoted = inner.strip_prefix('"').and_then(|s| s.strip_suffix('"'));
    match (quoted, inner.parse::<usize>()) {
        (Some(key), _) => Ok(Segment::Key(key.to_string())),
        (None, Ok(i)) => Ok(Segment::Index(i)),
        (None, Err(_)) => Err(format!(
            "`[{inner}]` in path `{text}` is neither an index nor a quoted key"
        )),
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Index(n) => write!(f, "[{n}]")?,
                Segment::Key(k) if k.contains('.') => write!(f, "[\"{k}\"]")?,
                Segment::Key(k) if i == 0 => f.write_str(k)?,
                Segment::Key(k) => write!(f, ".{k}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_brackets_dots_and_seed_style_indexes() {
        let a = FieldPath::parse("spec.parts[0].template").unwrap();
        let b = FieldPath::parse("spec.parts.0.template").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "spec.parts[0].template");
        let quoted = FieldPath::parse(r#"metadata.annotations["berth.io/x"]"#).unwrap();
        assert_eq!(quoted.0[2], Segment::Key("berth.io/x".into()));
    }

    #[test]
    fn set_creates_a_last_key_but_never_a_parent() {
        let mut doc = json!({"spec": {"parts": [{"name": "a"}]}});
        FieldPath::parse("spec.parts[0].replicas")
            .unwrap()
            .set(&mut doc, json!(5))
            .unwrap();
        assert_eq!(doc["spec"]["parts"][0]["replicas"], 5);
        let err = FieldPath::parse("spec.parts[3].replicas")
            .unwrap()
            .set(&mut doc, json!(5))
            .unwrap_err();
        assert_eq!(err, "`spec.parts[3]` does not exist");
        let err = FieldPath::parse("spec.parts[1]")
            .unwrap()
            .set(&mut doc, json!(5))
            .unwrap_err();
        assert!(err.contains("out of range"), "{err}");
    }

    #[test]
    fn malformed_paths_are_rejected() {
        assert!(FieldPath::parse("").is_err());
        assert!(FieldPath::parse("a..b").is_err());
        assert!(FieldPath::parse("a[x]").is_err());
        assert!(FieldPath::parse("a[0").is_err());
    }
}
