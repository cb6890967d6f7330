//! Points per check: the built-in table (`labs/points.toml`, compiled in) and an
//! instructor's own (`--points FILE`, same form; a check it does not name keeps its built-in
//! points). The checks' code never says what they are worth: this table does, so a course
//! changes a grade in one documented place.

use std::collections::BTreeMap;

/// The built-in table.
pub const BUILTIN: &str = include_str!("../points.toml");

/// Points by (lab, check id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Points(BTreeMap<(u8, String), u32>);

/// The line (1-based) of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl Points {
    /// The table compiled into `lab`.
    pub fn builtin() -> Points {
        // A test proves the built-in table parses and covers every check.
        Points::parse(BUILTIN, "points.toml").unwrap_or_default()
    }

    /// Reads a table of the form of `labs/points.toml` from `path`.
    pub fn load(path: &std::path::Path) -> Result<Points, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Points::parse(&text, &path.display().to_string())
    }

    /// Parses `[labN]` tables of `check = points`; `source` names the text in errors
    /// (`FILE:LINE: …`). Labs and checks must exist.
    pub fn parse(text: &str, source: &str) -> Result<Points, String> {
        let doc = toml_edit::Document::parse(text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of(text, s.start));
            format!("{source}:{line}: {}", e.message().trim())
        })?;
        let labs = crate::definitions();
        let mut points = BTreeMap::new();
        for (key, item) in doc.as_table().iter() {
            let at =
                |span: Option<std::ops::Range<usize>>| span.map_or(1, |s| line_of(text, s.start));
            let key_line = at(doc.as_table().key(key).and_then(|k| k.span()));
            let lab = key
                .strip_prefix("lab")
                .and_then(|n| n.parse::<u8>().ok())
                .and_then(|n| labs.iter().find(|l| l.number == n))
                .ok_or_else(|| {
                    format!("{source}:{key_line}: [{key}] is not a lab (they are [lab1] … [lab5])")
                })?;
            let table = item
                .as_table()
                .ok_or_else(|| format!("{source}:{key_line}: {key} must be a table, [{key}]"))?;
            for (id, value) in table.iter() {
                let line = at(table.key(id).and_then(|k| k.span()));
                if lab.check(id).is_none() {
                    let ids: Vec<&str> = lab.checks.iter().map(|c| c.id).collect();
                    return Err(format!(
                        "{source}:{line}: lab {} has no check {id:?} (its checks: {})",
                        lab.number,
                        ids.join(", ")
                    ));
                }
                let n = value
                    .as_integer()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|&n| n <= 1000)
                    .ok_or_else(|| {
                        format!("{source}:{line}: {id} must be a whole number of points, 0 to 1000")
                    })?;
                points.insert((lab.number, id.to_string()), n);
            }
        }
        Ok(Points(points))
    }

    /// What `check` of lab `lab` is worth here, if this table says.
    pub fn get(&self, lab: u8, check: &str) -> Option<u32> {
        self.0.get(&(lab, check.to_string())).copied()
    }

    /// This table over `base`: its entries win, `base` fills the rest.
    pub fn over(mut self, base: &Points) -> Points {
        for (k, v) in &base.0 {
            self.0.entry(k.clone()).or_insert(*v);
        }
        self
    }

    /// Sets the points of `lab`'s checks from this table (those it does not name keep theirs).
    pub fn apply(&self, lab: &mut crate::Lab) {
        for check in &mut lab.checks {
            if let Some(n) = self.get(lab.number, check.id) {
                check.points = n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_builtin_table_covers_every_check_and_each_lab_adds_up_to_100() {
        let builtin = Points::parse(BUILTIN, "points.toml").unwrap();
        for lab in crate::definitions() {
            let mut total = 0;
            for check in &lab.checks {
                total += builtin
                    .get(lab.number, check.id)
                    .unwrap_or_else(|| panic!("lab {} {} has no points", lab.number, check.id));
            }
            assert_eq!(total, 100, "lab {}", lab.number);
        }
        assert_eq!(
            crate::lab(2).unwrap().check("get-small").unwrap().points,
            10
        );
    }

    /// The handouts state each check's points the way the table does.
    #[test]
    fn the_handouts_give_the_tables_points() {
        let handouts = [
            include_str!("../handouts/lab1.md"),
            include_str!("../handouts/lab2.md"),
            include_str!("../handouts/lab3.md"),
            include_str!("../handouts/lab4.md"),
            include_str!("../handouts/lab5.md"),
        ];
        for (lab, text) in crate::all_labs().iter().zip(handouts) {
            for check in &lab.checks {
                let (id, n) = (check.id, check.points);
                assert!(
                    text.contains(&format!("| {id} | {n} |"))
                        || text.contains(&format!("{id} ({n})"))
                        || text.contains(&format!("{id} ({n}:")),
                    "labs/handouts/lab{}.md does not give {id} its {n} points",
                    lab.number
                );
            }
        }
    }

    #[test]
    fn an_instructors_table_overrides_what_it_names_and_says_where_it_is_wrong() {
        let mine = Points::parse("[lab2]\nvia = 0\nget-small = 20\n", "mine.toml").unwrap();
        let mut lab = crate::lab(2).unwrap();
        mine.apply(&mut lab);
        assert_eq!(lab.check("via").unwrap().points, 0);
        assert_eq!(lab.check("get-small").unwrap().points, 20);
        assert_eq!(lab.check("head").unwrap().points, 5);
        assert_eq!(lab.points(), 105);
        let err = |text: &str| Points::parse(text, "mine.toml").unwrap_err();
        assert_eq!(
            err("[lab2]\nvia = 5\nvai = 5\n"),
            "mine.toml:3: lab 2 has no check \"vai\" (its checks: get-small, get-large-binary, head, post-body, put-chunked, chunked-response, close-delimited, status-codes, origin-form, headers-kept, hop-by-hop, via, keep-alive, unreachable-502, malformed-400)"
        );
        assert_eq!(
            err("\n[lab9]\nx = 1\n"),
            "mine.toml:2: [lab9] is not a lab (they are [lab1] … [lab5])"
        );
        assert_eq!(
            err("[lab1]\ngreeting = -3\n"),
            "mine.toml:2: greeting must be a whole number of points, 0 to 1000"
        );
        assert!(err("[lab1\n").starts_with("mine.toml:1: "));
    }
}
