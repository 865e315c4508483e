//! conda's version order and version specs (`conda.models.version`), as
//! conda 26.7 implements them: [`VersionOrder`] compares two version
//! strings, [`VersionSpec`] matches a version against `>=1.2,<2|1.0*`.
//!
//! current_repodata.json keeps the newest version of every package, so its
//! bytes depend on this order being conda's to the letter (`1.1dev1 <
//! 1.1a1 < 1.1 < 1.1post1`, `1.1 == 1.1.0`, epochs, local versions).

use std::cmp::Ordering;

/// Why a version or a version spec was refused (conda's `InvalidVersionSpec`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version spec {spec:?}: {reason}")]
pub struct InvalidVersion {
    pub spec: String,
    pub reason: &'static str,
}

fn invalid(spec: &str, reason: &'static str) -> InvalidVersion {
    InvalidVersion {
        spec: spec.to_owned(),
        reason,
    }
}

/// One run of a version component: a number, `post` (above every number),
/// or a string (`dev` is kept upper-case, so it sorts below other strings).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Decimal digits without leading zeros ("" is zero).
    Int(String),
    Inf,
    Str(String),
}

static ZERO: Part = Part::Int(String::new());

impl Part {
    fn is_str(&self) -> bool {
        matches!(self, Part::Str(_))
    }

    fn number(digits: &str) -> Self {
        Part::Int(digits.trim_start_matches('0').to_owned())
    }

    /// Python's `c1 < c2` between two parts of the same kind (strings
    /// below numbers is handled by the caller).
    fn cmp_same(&self, other: &Part) -> Ordering {
        match (self, other) {
            (Part::Int(a), Part::Int(b)) => a.len().cmp(&b.len()).then_with(|| a.cmp(b)),
            (Part::Int(_), Part::Inf) => Ordering::Less,
            (Part::Inf, Part::Int(_)) => Ordering::Greater,
            (Part::Inf, Part::Inf) => Ordering::Equal,
            (Part::Str(a), Part::Str(b)) => a.cmp(b),
            // Not reached: mixed kinds are ordered by `cmp_parts`.
            (Part::Str(_), _) => Ordering::Less,
            (_, Part::Str(_)) => Ordering::Greater,
        }
    }
}

fn cmp_parts(a: &Part, b: &Part) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    match (a.is_str(), b.is_str()) {
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => a.cmp_same(b),
    }
}

type Component = Vec<Part>;

/// A parsed version, ordered as conda orders them.
#[derive(Debug, Clone)]
pub struct VersionOrder {
    norm: String,
    version: Vec<Component>,
    local: Vec<Component>,
}

/// `zip_longest` over two component lists, the missing side `[]`, each
/// pair compared part by part with 0 filling the shorter one.
fn lists_eq(a: &[Component], b: &[Component]) -> bool {
    (0..a.len().max(b.len())).all(|i| {
        let (x, y) = (
            a.get(i).map_or(&[][..], |c| c),
            b.get(i).map_or(&[][..], |c| c),
        );
        (0..x.len().max(y.len())).all(|j| x.get(j).unwrap_or(&ZERO) == y.get(j).unwrap_or(&ZERO))
    })
}

fn lists_cmp(a: &[Component], b: &[Component]) -> Ordering {
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (
            a.get(i).map_or(&[][..], |c| c),
            b.get(i).map_or(&[][..], |c| c),
        );
        for j in 0..x.len().max(y.len()) {
            let ordering = cmp_parts(x.get(j).unwrap_or(&ZERO), y.get(j).unwrap_or(&ZERO));
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
    }
    Ordering::Equal
}

/// `version_split_re`: runs of digits, of `*`, of anything else.
fn split_runs(component: &str) -> Vec<&str> {
    let kind = |c: char| match c {
        '0'..='9' => 0,
        '*' => 1,
        _ => 2,
    };
    let mut runs = Vec::new();
    let mut start = 0;
    let mut last = None;
    for (i, c) in component.char_indices() {
        let k = kind(c);
        if last.is_some_and(|l| l != k) {
            runs.extend(component.get(start..i));
            start = i;
        }
        last = Some(k);
    }
    if start < component.len() {
        runs.extend(component.get(start..));
    }
    runs
}

fn components(vstr: &str, pieces: &[String]) -> Result<Vec<Component>, InvalidVersion> {
    pieces
        .iter()
        .map(|piece| {
            let runs = split_runs(piece);
            if runs.is_empty() {
                return Err(invalid(vstr, "empty version component"));
            }
            let mut parts: Component = runs
                .into_iter()
                .map(|run| {
                    if run.bytes().all(|b| b.is_ascii_digit()) {
                        Part::number(run)
                    } else if run == "post" {
                        Part::Inf
                    } else if run == "dev" {
                        Part::Str("DEV".into())
                    } else {
                        Part::Str(run.to_owned())
                    }
                })
                .collect();
            // Components start with a number: '1.1.a1' == '1.1.0a1'.
            if !piece.starts_with(|c: char| c.is_ascii_digit()) {
                parts.insert(0, ZERO.clone());
            }
            Ok(parts)
        })
        .collect()
}

impl VersionOrder {
    pub fn parse(vstr: &str) -> Result<Self, InvalidVersion> {
        let mut version = vstr.trim().to_lowercase();
        if version.is_empty() {
            return Err(invalid(vstr, "empty version string"));
        }
        let valid = |v: &str| {
            v.chars()
                .all(|c| matches!(c, '*' | '.' | '+' | '!' | '_' | '0'..='9' | 'a'..='z'))
        };
        let mut ok = valid(&version);
        if !ok && version.contains('-') && !version.contains('_') {
            // Dashes are allowed as long as there are no underscores.
            version = version.replace('-', "_");
            ok = valid(&version);
        }
        if !ok {
            return Err(invalid(vstr, "invalid character(s)"));
        }
        let norm = version.clone();
        let (epoch, rest) = match version.split('!').collect::<Vec<_>>()[..] {
            [rest] => ("0", rest),
            [epoch, rest] => {
                if epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid(vstr, "epoch must be an integer"));
                }
                (epoch, rest)
            }
            _ => return Err(invalid(vstr, "duplicated epoch separator '!'")),
        };
        let (main, local) = match rest.split('+').collect::<Vec<_>>()[..] {
            [main] => (main, None),
            [main, local] => (main, Some(local)),
            _ => return Err(invalid(vstr, "duplicated local version separator '+'")),
        };
        if main.is_empty() {
            return Err(invalid(
                vstr,
                "Missing version before local version separator '+'",
            ));
        }
        let local_pieces: Vec<String> = local
            .map(|l| l.replace('_', ".").split('.').map(str::to_owned).collect())
            .unwrap_or_default();
        // A trailing '_' stays on the last component (openssl-like
        // versions: `1.0.1_` sorts after `1.0.1a`'s scheme).
        let mut pieces: Vec<String> = match main.strip_suffix('_') {
            Some(stem) => {
                let mut pieces: Vec<String> = stem
                    .replace('_', ".")
                    .split('.')
                    .map(str::to_owned)
                    .collect();
                if let Some(last) = pieces.last_mut() {
                    last.push('_');
                }
                pieces
            }
            None => main
                .replace('_', ".")
                .split('.')
                .map(str::to_owned)
                .collect(),
        };
        pieces.insert(0, epoch.to_owned());
        Ok(Self {
            norm,
            version: components(vstr, &pieces)?,
            local: components(vstr, &local_pieces)?,
        })
    }

    /// Whether `self` matches `prefix` up to `prefix`'s last part (the
    /// `1.2.*` spec); a trailing string part matches as a prefix.
    pub fn startswith(&self, prefix: &VersionOrder) -> bool {
        let (t1, t2) = if prefix.local.is_empty() {
            (&self.version, &prefix.version)
        } else {
            if !lists_eq(&self.version, &prefix.version) {
                return false;
            }
            (&self.local, &prefix.local)
        };
        let Some(nt) = t2.len().checked_sub(1) else {
            return true;
        };
        if !lists_eq(t1.get(..nt).unwrap_or(t1), t2.get(..nt).unwrap_or(t2)) {
            return false;
        }
        let empty = Vec::new();
        let v1 = t1.get(nt).unwrap_or(&empty);
        let Some(v2) = t2.get(nt) else { return true };
        let Some(np) = v2.len().checked_sub(1) else {
            return true;
        };
        let head1 = vec![v1.get(..np).unwrap_or(v1).to_vec()];
        let head2 = vec![v2.get(..np).unwrap_or(v2).to_vec()];
        if !lists_eq(&head1, &head2) {
            return false;
        }
        let c1 = v1.get(np).unwrap_or(&ZERO);
        match v2.get(np) {
            Some(Part::Str(c2)) => matches!(c1, Part::Str(s) if s.starts_with(c2.as_str())),
            Some(c2) => c1 == c2,
            None => true,
        }
    }
}

impl std::fmt::Display for VersionOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.norm)
    }
}

impl PartialEq for VersionOrder {
    fn eq(&self, other: &Self) -> bool {
        lists_eq(&self.version, &other.version) && lists_eq(&self.local, &other.local)
    }
}

impl Eq for VersionOrder {}

impl PartialOrd for VersionOrder {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for VersionOrder {
    fn cmp(&self, other: &Self) -> Ordering {
        lists_cmp(&self.version, &other.version).then_with(|| lists_cmp(&self.local, &other.local))
    }
}

/// A version spec: `1.2`, `>=1.2,<2`, `1.2.*`, `1.2|>3`, `^1\.[0-9]$`.
#[derive(Debug, Clone)]
pub enum VersionSpec {
    Any,
    Op(Operator, VersionOrder),
    StartsWith(VersionOrder),
    NotStartsWith(VersionOrder),
    Regex(regex::Regex),
    /// A spec with `@`: compared as a string.
    Exact(String),
    And(Vec<VersionSpec>),
    Or(Vec<VersionSpec>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Eq,
    Ne,
    Le,
    Ge,
    Lt,
    Gt,
    Compatible,
}

/// The parse tree of a spec with `,` and `|` (conda's `treeify`).
enum Tree {
    Leaf(String),
    Node(char, Vec<Tree>),
}

fn tokens(spec: &str) -> Vec<String> {
    // VSPEC_TOKENS: regexes `^...$`, the operators, everything else.
    let text = format!("({spec})");
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let trimmed = rest.trim_start();
        if trimmed.starts_with('^') {
            if let Some(end) = trimmed.find('$') {
                out.push(trimmed.get(..=end).unwrap_or(trimmed).to_owned());
                rest = trimmed.get(end + 1..).unwrap_or("");
                continue;
            }
        }
        if let Some(c) = trimmed.chars().next().filter(|c| "()|,".contains(*c)) {
            out.push(c.to_string());
            rest = trimmed.get(1..).unwrap_or("");
            continue;
        }
        let end = rest.find(|c| "()|,".contains(c)).unwrap_or(rest.len());
        if end == 0 {
            // Only whitespace before the end: nothing more to read.
            break;
        }
        out.push(rest.get(..end).unwrap_or(rest).to_owned());
        rest = rest.get(end..).unwrap_or("");
    }
    out
}

fn treeify(spec: &str) -> Result<Tree, InvalidVersion> {
    let mut output: Vec<Tree> = Vec::new();
    let mut stack: Vec<char> = Vec::new();
    let apply = |output: &mut Vec<Tree>, stack: &mut Vec<char>, stop: &str| {
        while let Some(&c) = stack.last().filter(|c| !stop.contains(**c)) {
            if output.len() < 2 {
                return Err(invalid(spec, "cannot join single expression"));
            }
            stack.pop();
            let (Some(right), Some(left)) = (output.pop(), output.pop()) else {
                return Err(invalid(spec, "cannot join single expression"));
            };
            // Fuse expressions with the same operator.
            let mut children = Vec::new();
            for side in [left, right] {
                match side {
                    Tree::Node(op, inner) if op == c => children.extend(inner),
                    other => children.push(other),
                }
            }
            output.push(Tree::Node(c, children));
        }
        Ok(())
    };
    for token in tokens(spec) {
        let item = token.trim();
        match item {
            "|" => {
                apply(&mut output, &mut stack, "(")?;
                stack.push('|');
            }
            "," => {
                apply(&mut output, &mut stack, "|(")?;
                stack.push(',');
            }
            "(" => stack.push('('),
            ")" => {
                apply(&mut output, &mut stack, "(")?;
                if stack.pop() != Some('(') {
                    return Err(invalid(spec, "expression must start with '('"));
                }
            }
            _ => output.push(Tree::Leaf(item.to_owned())),
        }
    }
    if !stack.is_empty() {
        return Err(invalid(spec, "unable to convert to expression tree"));
    }
    output
        .into_iter()
        .next()
        .ok_or_else(|| invalid(spec, "unable to determine version from spec"))
}

impl VersionSpec {
    pub fn parse(spec: &str) -> Result<Self, InvalidVersion> {
        // regex_split_re: `.*[()|,^$]` anywhere makes it an expression.
        if spec.contains(['(', ')', '|', ',', '^', '$']) {
            return Self::from_tree(treeify(spec)?);
        }
        Self::leaf(spec)
    }

    fn from_tree(tree: Tree) -> Result<Self, InvalidVersion> {
        match tree {
            Tree::Leaf(leaf) => Self::leaf(&leaf),
            Tree::Node(op, children) => {
                let children = children
                    .into_iter()
                    .map(Self::from_tree)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(if op == '|' {
                    Self::Or(children)
                } else {
                    Self::And(children)
                })
            }
        }
    }

    fn leaf(raw: &str) -> Result<Self, InvalidVersion> {
        let spec = raw.trim();
        let (Some(first), Some(last)) = (spec.chars().next(), spec.chars().last()) else {
            return Err(invalid(raw, "empty version spec"));
        };
        if first == '^' || last == '$' {
            if first != '^' || last != '$' {
                return Err(invalid(
                    spec,
                    "regex specs must start with '^' and end with '$'",
                ));
            }
            return regex::Regex::new(spec)
                .map(Self::Regex)
                .map_err(|_| invalid(spec, "invalid regex"));
        }
        if "=<>!~".contains(first) {
            return Self::relation(spec);
        }
        if spec == "*" {
            return Ok(Self::Any);
        }
        if spec.trim_end_matches('*').contains('*') {
            let pattern = spec
                .replace('.', r"\.")
                .replace('+', r"\+")
                .replace('*', ".*");
            return regex::Regex::new(&format!("^(?:{pattern})$"))
                .map(Self::Regex)
                .map_err(|_| invalid(spec, "invalid regex"));
        }
        if let Some(stem) = spec.strip_suffix('*') {
            let stem = stem.trim_end_matches('*').trim_end_matches('.');
            return Ok(Self::StartsWith(VersionOrder::parse(stem)?));
        }
        if spec.contains('@') {
            return Ok(Self::Exact(spec.to_owned()));
        }
        Ok(Self::Op(Operator::Eq, VersionOrder::parse(spec)?))
    }

    /// `version_relation_re`: `^(=|==|!=|<=|>=|<|>|~=)(?![=<>!~])(\S+)$`.
    fn relation(spec: &str) -> Result<Self, InvalidVersion> {
        let ops = [
            ("==", Some(Operator::Eq)),
            ("!=", Some(Operator::Ne)),
            ("<=", Some(Operator::Le)),
            (">=", Some(Operator::Ge)),
            ("~=", Some(Operator::Compatible)),
            ("<", Some(Operator::Lt)),
            (">", Some(Operator::Gt)),
            ("=", None),
        ];
        let bad = || invalid(spec, "invalid operator");
        let (op_str, op, rest) = ops
            .iter()
            .find_map(|(s, op)| spec.strip_prefix(s).map(|rest| (*s, *op, rest)))
            .ok_or_else(bad)?;
        if rest.is_empty()
            || rest.starts_with(['=', '<', '>', '!', '~'])
            || rest.chars().any(char::is_whitespace)
        {
            return Err(bad());
        }
        let (vo, star) = match rest.strip_suffix(".*") {
            Some(stem) => (stem, true),
            None => (rest, false),
        };
        let version = VersionOrder::parse(vo)?;
        Ok(match (op_str, op) {
            ("=", _) => Self::StartsWith(version),
            ("!=", _) if star => Self::NotStartsWith(version),
            ("~=", _) if star => return Err(invalid(spec, "invalid operator with '.*'")),
            (_, Some(op)) => Self::Op(op, version),
            (_, None) => return Err(bad()),
        })
    }

    /// Whether `version` (a record's version string) matches.
    pub fn matches(&self, version: &str) -> bool {
        let parsed = || VersionOrder::parse(version).ok();
        match self {
            Self::Any => true,
            Self::Regex(re) => re.is_match(version),
            Self::Exact(spec) => spec == version,
            Self::And(all) => all.iter().all(|s| s.matches(version)),
            Self::Or(any) => any.iter().any(|s| s.matches(version)),
            Self::StartsWith(prefix) => parsed().is_some_and(|v| v.startswith(prefix)),
            Self::NotStartsWith(prefix) => parsed().is_some_and(|v| !v.startswith(prefix)),
            Self::Op(op, other) => parsed().is_some_and(|v| match op {
                Operator::Eq => v == *other,
                Operator::Ne => v != *other,
                Operator::Le => v <= *other,
                Operator::Ge => v >= *other,
                Operator::Lt => v < *other,
                Operator::Gt => v > *other,
                Operator::Compatible => {
                    let text = other.to_string();
                    let stem = text.rsplit_once('.').map_or("", |(stem, _)| stem);
                    v >= *other && VersionOrder::parse(stem).is_ok_and(|s| v.startswith(&s))
                }
            }),
        }
    }
}

#[cfg(test)]
#[path = "version_tests.rs"]
mod tests;
