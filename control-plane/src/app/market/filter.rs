//! Resource filters: typed comparisons on a node's inventory, ANDed.
//! Written `field op value[,field op value...]`, e.g.
//! `cpus>=16,memory_gib>=64,nics>=2`. Fields: `cpus`, `memory_gib`,
//! `disks`, `disk_gib`, `nics`; operators `=`, `!=`, `<`, `<=`, `>`, `>=`;
//! values are integers. No regular expressions, nothing evaluated: a filter
//! that does not parse is refused with the reason, before anything runs.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What one unit of an offer has, from the node runtime's inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Online CPUs.
    pub cpus: i64,
    /// Memory, GiB (rounded down).
    pub memory_gib: i64,
    /// Whole disks.
    pub disks: i64,
    /// All disks together, GiB (rounded down).
    pub disk_gib: i64,
    /// Network interfaces.
    pub nics: i64,
}

impl Resources {
    /// From a runtime check-in's inventory.
    pub fn from_inventory(inv: &metalcast_runtime_api::Inventory) -> Resources {
        let gib = |b: u64| i64::try_from(b >> 30).unwrap_or(i64::MAX);
        Resources {
            cpus: i64::from(inv.cpus),
            memory_gib: gib(inv.memory_bytes),
            disks: inv.disks.len() as i64,
            disk_gib: gib(inv.disks.iter().map(|d| d.size_bytes).sum()),
            nics: inv.nics.len() as i64,
        }
    }

    /// The value of `field`.
    pub fn get(&self, field: Field) -> i64 {
        match field {
            Field::Cpus => self.cpus,
            Field::MemoryGib => self.memory_gib,
            Field::Disks => self.disks,
            Field::DiskGib => self.disk_gib,
            Field::Nics => self.nics,
        }
    }

    /// The resource class clearing prices are grouped by, e.g. `16c-64g-2d`.
    pub fn class(&self) -> String {
        format!("{}c-{}g-{}d", self.cpus, self.memory_gib, self.disks)
    }
}

/// A field of [`Resources`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `cpus`.
    Cpus,
    /// `memory_gib`.
    MemoryGib,
    /// `disks`.
    Disks,
    /// `disk_gib`.
    DiskGib,
    /// `nics`.
    Nics,
}

const FIELDS: [(&str, Field); 5] = [
    ("cpus", Field::Cpus),
    ("memory_gib", Field::MemoryGib),
    ("disks", Field::Disks),
    ("disk_gib", Field::DiskGib),
    ("nics", Field::Nics),
];

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`.
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
}

// Longest first, so `<=` is not read as `<`.
const OPS: [(&str, Op); 6] =
    [("!=", Op::Ne), ("<=", Op::Le), (">=", Op::Ge), ("=", Op::Eq), ("<", Op::Lt), (">", Op::Gt)];

/// One condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Condition {
    /// Field.
    pub field: Field,
    /// Comparison.
    pub op: Op,
    /// Right-hand side.
    pub value: i64,
}

/// Conditions, all of which must hold; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter(pub Vec<Condition>);

/// At most this many conditions.
pub const MAX_CONDITIONS: usize = 16;

impl Filter {
    /// Parses `field op value[,...]`; the error names what is wrong.
    pub fn parse(s: &str) -> Result<Filter, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(Filter::default());
        }
        let mut out = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let Some((at, (sym, op))) = OPS
                .iter()
                .filter_map(|(sym, op)| part.find(sym).map(|i| (i, (*sym, *op))))
                .min_by_key(|(i, (sym, _))| (*i, usize::MAX - sym.len()))
            else {
                return Err(format!("filter condition {part:?} has no operator (one of = != < <= > >=)"));
            };
            let name = part[..at].trim();
            let field = FIELDS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f).ok_or_else(|| {
                format!("unknown filter field {name:?} (fields: cpus, memory_gib, disks, disk_gib, nics)")
            })?;
            let raw = part[at + sym.len()..].trim();
            let value: i64 = raw.parse().map_err(|_| format!("filter value {raw:?} of {name} is not an integer"))?;
            if !(0..=1 << 40).contains(&value) {
                return Err(format!("filter value {value} of {name} is out of range"));
            }
            out.push(Condition { field, op, value });
        }
        if out.len() > MAX_CONDITIONS {
            return Err(format!("a filter has at most {MAX_CONDITIONS} conditions"));
        }
        Ok(Filter(out))
    }

    /// Whether `r` satisfies every condition.
    pub fn matches(&self, r: &Resources) -> bool {
        self.0.iter().all(|c| {
            let v = r.get(c.field);
            match c.op {
                Op::Eq => v == c.value,
                Op::Ne => v != c.value,
                Op::Lt => v < c.value,
                Op::Le => v <= c.value,
                Op::Gt => v > c.value,
                Op::Ge => v >= c.value,
            }
        })
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            let name = FIELDS.iter().find(|(_, x)| *x == c.field).map_or("?", |(n, _)| n);
            let sym = OPS.iter().find(|(_, o)| *o == c.op).map_or("?", |(s, _)| s);
            write!(f, "{}{name}{sym}{}", if i > 0 { "," } else { "" }, c.value)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Resources = Resources { cpus: 16, memory_gib: 64, disks: 2, disk_gib: 1800, nics: 2 };

    #[test]
    fn parses_matches_and_prints_back() {
        let f = Filter::parse("cpus>=16, memory_gib>32,nics!=1,disks<=2").unwrap();
        assert!(f.matches(&R));
        assert_eq!(f.to_string(), "cpus>=16,memory_gib>32,nics!=1,disks<=2");
        assert_eq!(Filter::parse(&f.to_string()).unwrap(), f);
        assert!(!Filter::parse("cpus>16").unwrap().matches(&R));
        assert!(Filter::parse("cpus=16,disk_gib<2000").unwrap().matches(&R));
        assert!(Filter::parse("").unwrap().matches(&R));
    }

    #[test]
    fn refuses_with_reasons() {
        for (bad, why) in [
            ("gpus>=1", "unknown filter field"),
            ("cpus~8", "no operator"),
            ("cpus>=eight", "not an integer"),
            ("cpus>=-1", "out of range"),
            ("cpus>=.*", "not an integer"),
        ] {
            let e = Filter::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
