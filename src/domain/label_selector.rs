//! Kubernetes label selectors: `a=b`, `a!=b`, `a in (b,c)`, `a notin (b)`, `a`, `!a`,
//! joined by commas; every requirement must hold.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Invalid, LabelValue, QualifiedName};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector(Vec<Requirement>);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requirement {
    key: String,
    op: Operator,
    values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Operator {
    In,
    NotIn,
    Exists,
    NotExists,
}

impl LabelSelector {
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        let mut parser = Parser { input, position: 0 };
        let mut requirements = Vec::new();
        if parser.at_end() {
            return Ok(Self(requirements));
        }
        loop {
            requirements.push(parser.requirement()?);
            if parser.at_end() {
                return Ok(Self(requirements));
            }
            parser.require(',', "',' or the end")?;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The selector split into the conjunctions a jsonb index can serve and the cheap
    /// checks that complete them; together they select exactly what [`Self::matches`]
    /// does.
    pub fn conjuncts(&self) -> Conjuncts {
        let mut conjuncts = Conjuncts::default();
        for r in &self.0 {
            match (r.op, r.values.as_slice()) {
                (Operator::In, [value])
                    if conjuncts
                        .equal
                        .get(&r.key)
                        .is_none_or(|known| known == value) =>
                {
                    conjuncts.equal.insert(r.key.clone(), value.clone());
                }
                (Operator::In, _) => {
                    conjuncts.present.push(r.key.clone());
                    conjuncts.any_of.push(r.clone());
                }
                (Operator::Exists, _) => conjuncts.present.push(r.key.clone()),
                (Operator::NotExists, _) => conjuncts.absent.push(r.key.clone()),
                (Operator::NotIn, values) => conjuncts.excluded.extend(
                    values
                        .iter()
                        .map(|v| BTreeMap::from([(r.key.clone(), v.clone())])),
                ),
            }
        }
        conjuncts
    }
}

/// A selector as conjunctions: every field must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Conjuncts {
    /// Labels that must have exactly these values (`k=v`, `k in (v)`).
    pub equal: BTreeMap<String, String>,
    /// Keys that must be present (`k`, and the key of `k in (a, b)`).
    pub present: Vec<String>,
    /// Keys that must be absent (`!k`).
    pub absent: Vec<String>,
    /// Single labels that must not be there (`k!=v`, `k notin (a, b)`).
    pub excluded: Vec<BTreeMap<String, String>>,
    /// What only a full check decides: `in` with several values (or a second value
    /// for a key already required equal to another).
    pub any_of: Vec<Requirement>,
}

impl Conjuncts {
    /// Whether an index on the labels can narrow the candidates: some label or key
    /// must be present. Negations alone leave every row a candidate.
    pub fn is_indexable(&self) -> bool {
        !self.equal.is_empty() || !self.present.is_empty()
    }
}

struct Parser<'a> {
    input: &'a str,
    position: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.input[self.position..]
    }

    fn skip_spaces(&mut self) {
        let trimmed = self.rest().trim_start();
        self.position = self.input.len() - trimmed.len();
    }

    fn at_end(&mut self) -> bool {
        self.skip_spaces();
        self.rest().is_empty()
    }

    fn error(&self, expected: &'static str) -> Invalid {
        Invalid::Syntax {
            position: self.position + 1,
            expected,
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_spaces();
        let found = self.rest().starts_with(token);
        if found {
            self.position += token.len();
        }
        found
    }

    fn require(&mut self, token: char, expected: &'static str) -> Result<(), Invalid> {
        if self.eat(token.encode_utf8(&mut [0; 4])) {
            Ok(())
        } else {
            Err(self.error(expected))
        }
    }

    /// A run of characters that can appear in keys and values.
    fn word(&mut self) -> &str {
        self.skip_spaces();
        let start = self.position;
        let len = self
            .rest()
            .find(|c: char| c.is_whitespace() || "!=,()".contains(c))
            .unwrap_or(self.rest().len());
        self.position += len;
        &self.input[start..start + len]
    }

    fn key(&mut self) -> Result<String, Invalid> {
        let start = self.position;
        let word = self.word().to_owned();
        if word.is_empty() {
            self.position = start;
            return Err(self.error("a label key"));
        }
        QualifiedName::parse(&word).map(|_| word)
    }

    fn value(&mut self) -> Result<String, Invalid> {
        let word = self.word().to_owned();
        LabelValue::parse(&word).map(|_| word)
    }

    fn requirement(&mut self) -> Result<Requirement, Invalid> {
        if self.eat("!") {
            let key = self.key()?;
            return Ok(Requirement {
                key,
                op: Operator::NotExists,
                values: Vec::new(),
            });
        }
        let key = self.key()?;
        let (op, values) = if self.eat("!=") {
            (Operator::NotIn, vec![self.value()?])
        } else if self.eat("==") || self.eat("=") {
            (Operator::In, vec![self.value()?])
        } else {
            let checkpoint = self.position;
            match self.word() {
                "in" => (Operator::In, self.value_set()?),
                "notin" => (Operator::NotIn, self.value_set()?),
                "" => (Operator::Exists, Vec::new()),
                _ => {
                    self.position = checkpoint;
                    return Err(self.error("an operator (=, ==, !=, in, notin), ',' or the end"));
                }
            }
        };
        Ok(Requirement { key, op, values })
    }

    fn value_set(&mut self) -> Result<Vec<String>, Invalid> {
        self.require('(', "'('")?;
        self.skip_spaces();
        if self.rest().starts_with(')') {
            return Err(self.error("at least one value"));
        }
        let mut values = vec![self.value()?];
        while self.eat(",") {
            values.push(self.value()?);
        }
        self.require(')', "',' or ')'")?;
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Kubernetes' meaning of a selector, requirement by requirement: the oracle for
    /// the conjunctions that the listing queries check in SQL.
    fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
        selector.0.iter().all(|r| {
            let value = labels.get(&r.key);
            match r.op {
                Operator::In => value.is_some_and(|v| r.values.contains(v)),
                Operator::NotIn => value.is_none_or(|v| !r.values.contains(v)),
                Operator::Exists => value.is_some(),
                Operator::NotExists => value.is_none(),
            }
        })
    }

    #[test]
    fn every_operator_parses_and_matches_like_kubernetes() {
        let prod = labels(&[("env", "prod"), ("tier", "db")]);
        let dev = labels(&[("env", "dev")]);
        let none = labels(&[]);
        let cases: &[(&str, [bool; 3])] = &[
            ("env=prod", [true, false, false]),
            ("env==prod", [true, false, false]),
            ("env!=prod", [false, true, true]),
            ("env in (prod, staging)", [true, false, false]),
            ("env notin (prod)", [false, true, true]),
            ("tier", [true, false, false]),
            ("!tier", [false, true, true]),
            ("env=prod,tier=db", [true, false, false]),
            (" env = dev , !tier ", [false, true, false]),
            ("", [true, true, true]),
            ("env=", [false, false, false]),
            ("app.kubernetes.io/part-of in (a,b)", [false, false, false]),
        ];
        for (input, expected) in cases {
            let selector = LabelSelector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            let got = [
                matches(&selector, &prod),
                matches(&selector, &dev),
                matches(&selector, &none),
            ];
            assert_eq!(&got, expected, "{input:?}");
        }
    }

    /// The conjunctions, checked one by one, as the listing queries check them.
    fn conjuncts_match(conjuncts: &Conjuncts, labels: &BTreeMap<String, String>) -> bool {
        conjuncts
            .equal
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && conjuncts.present.iter().all(|k| labels.contains_key(k))
            && !conjuncts.absent.iter().any(|k| labels.contains_key(k))
            && !conjuncts
                .excluded
                .iter()
                .any(|pair| pair.iter().all(|(k, v)| labels.get(k) == Some(v)))
            && matches(&LabelSelector(conjuncts.any_of.clone()), labels)
    }

    #[test]
    fn conjuncts_select_exactly_what_the_selector_matches() {
        let sets = [
            labels(&[("env", "prod"), ("tier", "db")]),
            labels(&[("env", "dev")]),
            labels(&[("env", "staging"), ("tier", "web")]),
            labels(&[("tier", "db")]),
            labels(&[]),
        ];
        let selectors = [
            "",
            "env=prod",
            "env in (prod)",
            "env in (prod, staging)",
            "env!=prod",
            "env notin (prod, dev)",
            "tier",
            "!tier",
            "env=prod,env=dev",
            "env=prod,env in (prod, dev)",
            "env in (dev, staging),tier in (web, db)",
            "tier=db,env!=dev,!owner",
        ];
        for input in selectors {
            let selector = LabelSelector::parse(input).unwrap();
            let conjuncts = selector.conjuncts();
            for set in &sets {
                assert_eq!(
                    conjuncts_match(&conjuncts, set),
                    matches(&selector, set),
                    "{input:?} on {set:?}"
                );
            }
        }
    }

    #[test]
    fn only_positive_requirements_make_a_selector_indexable() {
        for (input, indexable) in [
            ("", false),
            ("env!=prod,!tier", false),
            ("env notin (a)", false),
            ("env=prod", true),
            ("tier", true),
            ("env in (a, b),!tier", true),
        ] {
            let selector = LabelSelector::parse(input).unwrap();
            assert_eq!(selector.conjuncts().is_indexable(), indexable, "{input:?}");
        }
    }

    #[test]
    fn malformed_selectors_are_refused() {
        let cases = [
            "=prod",
            "env in ()",
            "env in (a",
            "env in a",
            "env notin",
            "env prod",
            "env=prod,",
            ",env",
            "!",
            "!env=prod",
            "bad key=1",
            "env=bad value",
            "env=(a)",
        ];
        for input in cases {
            assert!(LabelSelector::parse(input).is_err(), "{input:?}");
        }
    }

    #[test]
    fn syntax_errors_say_where() {
        assert_eq!(
            LabelSelector::parse("env in (a"),
            Err(Invalid::Syntax {
                position: 10,
                expected: "',' or ')'"
            })
        );
    }
}
