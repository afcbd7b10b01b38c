//! Where things are in a manifest file: its documents, and the line of a field the
//! server refused (named by a JSON pointer), so that an error reads `file:line`.

/// One document of a file: its text and the line (1-based) it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk<'a> {
    pub text: &'a str,
    pub first_line: usize,
}

/// The documents of a YAML stream, split at `---` lines (JSON is one document).
pub fn documents(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let (mut start, mut first_line) = (0, 1);
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end();
        if bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t") {
            chunks.push(Chunk {
                text: &text[start..offset],
                first_line,
            });
            start = offset + line.len();
            first_line = index + 2;
        }
        offset += line.len();
    }
    chunks.push(Chunk {
        text: &text[start..],
        first_line,
    });
    chunks
}

/// The line (1-based, within `text`) of the field `pointer` names in block-style YAML,
/// or of the nearest field that holds it; `None` when not even the first segment is
/// found (say, in flow style).
pub fn line_of(text: &str, pointer: &str) -> Option<usize> {
    let target: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    // Open nodes: (column, segment, next sequence index among its children).
    let mut open: Vec<(usize, String, usize)> = Vec::new();
    let mut root_items = 0;
    let mut best: Option<(usize, usize)> = None;
    for (index, line) in text.lines().enumerate() {
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let mut column = line.len() - content.len();
        let mut rest = content;
        loop {
            if rest == "-" || rest.starts_with("- ") {
                // An item closes what is deeper and its earlier siblings.
                while open
                    .last()
                    .is_some_and(|(c, s, _)| *c > column || (*c == column && is_index(s)))
                {
                    open.pop();
                }
                let position = match open.last_mut() {
                    Some((_, _, next)) => next,
                    None => &mut root_items,
                };
                let item = *position;
                *position += 1;
                open.push((column, item.to_string(), 0));
                note(&open, &target, index + 1, &mut best);
                let after = rest[1..].trim_start();
                column += rest.len() - after.len();
                rest = after;
                if rest.is_empty() {
                    break;
                }
                continue;
            }
            if let Some(key) = key_of(rest) {
                while open.last().is_some_and(|(c, _, _)| *c >= column) {
                    open.pop();
                }
                open.push((column, key, 0));
                note(&open, &target, index + 1, &mut best);
            }
            break;
        }
    }
    best.map(|(_, line)| line)
}

fn is_index(segment: &str) -> bool {
    !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit())
}

/// Remembers `line` when the open path is the longest prefix of `target` so far.
fn note(
    open: &[(usize, String, usize)],
    target: &[String],
    line: usize,
    best: &mut Option<(usize, usize)>,
) {
    let depth = open.len();
    let prefix = depth <= target.len() && open.iter().zip(target).all(|((_, s, _), t)| s == t);
    if prefix && best.is_none_or(|(deepest, _)| depth > deepest) {
        *best = Some((depth, line));
    }
}

/// The key of a `key: value` or `key:` line, unquoted.
fn key_of(text: &str) -> Option<String> {
    let (key, _) = if let Some(quoted) = text.strip_prefix('"') {
        let end = quoted.find('"')?;
        let rest = &quoted[end + 1..];
        (rest.starts_with(':')).then_some((&quoted[..end], rest))?
    } else if let Some(quoted) = text.strip_prefix('\'') {
        let end = quoted.find('\'')?;
        let rest = &quoted[end + 1..];
        (rest.starts_with(':')).then_some((&quoted[..end], rest))?
    } else {
        let end = text
            .match_indices(':')
            .map(|(i, _)| i)
            .find(|&i| text[i + 1..].is_empty() || text[i + 1..].starts_with([' ', '\t']))?;
        (&text[..end], &text[end..])
    };
    Some(key.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "\
apiVersion: extsvc.dev/v1alpha1
kind: ExternalService
metadata:
  name: cache
spec:
  ports:
  - name: redis
    port: 6379
  - name: metrics
    port: 0
  endpoints:
    - address: 192.0.2.1
    - address: \"db.example.com\"
      ports: [redis]
  healthChecks:
  - name: up
    tcp:
      port: redis
";

    #[test]
    fn a_pointer_finds_its_line() {
        assert_eq!(line_of(MANIFEST, "/metadata/name"), Some(4));
        assert_eq!(line_of(MANIFEST, "/spec/ports/0/port"), Some(8));
        assert_eq!(line_of(MANIFEST, "/spec/ports/1/port"), Some(10));
        assert_eq!(line_of(MANIFEST, "/spec/endpoints/1/address"), Some(13));
        assert_eq!(line_of(MANIFEST, "/spec/endpoints/1/ports/0"), Some(14));
        assert_eq!(line_of(MANIFEST, "/spec/healthChecks/0/tcp/port"), Some(18));
    }

    #[test]
    fn a_missing_field_points_at_what_holds_it() {
        assert_eq!(line_of(MANIFEST, "/spec/ingress"), Some(5));
        assert_eq!(line_of(MANIFEST, "/spec/ports/1/protocol"), Some(9));
        assert_eq!(line_of("{\"a\": 1}", "/b"), None);
    }

    #[test]
    fn documents_know_where_they_start() {
        let text = "a: 1\n---\nb: 2\nc: 3\n--- # comment\nd: 4\n";
        let chunks = documents(text);
        let starts: Vec<(usize, &str)> = chunks.iter().map(|c| (c.first_line, c.text)).collect();
        assert_eq!(starts, [(1, "a: 1\n"), (3, "b: 2\nc: 3\n"), (6, "d: 4\n")]);
        assert_eq!(line_of(chunks[1].text, "/c"), Some(2));
    }
}
