//! Which files of a partition go together into which output. Pure: no I/O.

use std::time::Duration;

use super::CompactOptions;

/// A file of a partition that may be merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Path relative to the lake root.
    pub path: String,
    pub size: u64,
    /// How long ago it was written.
    pub age: Duration,
}

/// One output and the inputs it is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bin {
    pub inputs: Vec<Candidate>,
    pub bytes: u64,
}

impl Bin {
    /// The name of the bin's output: a hash of its inputs (paths and sizes),
    /// so a retried merge of the same inputs writes the same output.
    pub fn id(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for i in &self.inputs {
            h.update(i.path.as_bytes());
            h.update([0]);
            h.update(i.size.to_le_bytes());
        }
        hex::encode(&h.finalize()[..12])
    }
}

/// Which files of one partition to merge into which outputs. Pure.
///
/// A file is small if it is under three quarters of the target. Small files
/// old enough are packed, largest first, into the first output they fit in
/// (first-fit decreasing); outputs of one file are dropped (nothing to
/// merge). Nothing happens unless at least `min_files` small files are old
/// enough.
pub fn plan_partition(files: &[Candidate], options: &CompactOptions) -> Vec<Bin> {
    let small = options.target_size / 4 * 3;
    let mut candidates: Vec<&Candidate> = files
        .iter()
        .filter(|f| f.size < small && f.age >= options.min_age)
        .collect();
    if candidates.len() < options.min_files.max(2) {
        return Vec::new();
    }
    candidates.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.path.cmp(&b.path)));
    let mut bins: Vec<Bin> = Vec::new();
    for c in candidates {
        match bins
            .iter_mut()
            .find(|b| b.bytes + c.size <= options.target_size)
        {
            Some(b) => {
                b.bytes += c.size;
                b.inputs.push(c.clone());
            }
            None => bins.push(Bin {
                inputs: vec![c.clone()],
                bytes: c.size,
            }),
        }
    }
    bins.retain(|b| b.inputs.len() > 1);
    for b in &mut bins {
        b.inputs.sort_by(|a, b| a.path.cmp(&b.path));
    }
    bins
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, mb: u64, age_min: u64) -> Candidate {
        Candidate {
            path: path.into(),
            size: mb * 1024 * 1024,
            age: Duration::from_secs(age_min * 60),
        }
    }

    /// Files from "path:mb:age_min" words.
    fn files(spec: &str) -> Vec<Candidate> {
        spec.split_whitespace()
            .map(|word| {
                let mut parts = word.split(':');
                let mut next = || parts.next().unwrap();
                let (path, mb, age) = (next(), next(), next());
                file(path, mb.parse().unwrap(), age.parse().unwrap())
            })
            .collect()
    }

    fn opts(target_mb: u64, min_files: usize, min_age_min: u64) -> CompactOptions {
        CompactOptions {
            target_size: target_mb * 1024 * 1024,
            min_files,
            min_age: Duration::from_secs(min_age_min * 60),
            ..Default::default()
        }
    }

    fn paths(bins: &[Bin]) -> Vec<Vec<&str>> {
        bins.iter()
            .map(|b| b.inputs.iter().map(|i| i.path.as_str()).collect())
            .collect()
    }

    #[test]
    fn plans_are_table_driven() {
        struct Case {
            name: &'static str,
            files: Vec<Candidate>,
            options: CompactOptions,
            want: Vec<Vec<&'static str>>,
        }
        let cases = vec![
            Case {
                name: "no files",
                files: files(""),
                options: opts(256, 2, 0),
                want: vec![],
            },
            Case {
                name: "fewer small files than the threshold",
                files: files("a:1:60 b:1:60 c:1:60"),
                options: opts(256, 4, 0),
                want: vec![],
            },
            Case {
                name: "enough small files: one output",
                files: files("a:1:60 b:2:60 c:3:60 d:4:60"),
                options: opts(256, 4, 0),
                want: vec![vec!["a", "b", "c", "d"]],
            },
            Case {
                name: "files younger than the quiet period are left alone",
                files: files("old1:1:60 old2:1:60 new1:1:5 new2:1:5"),
                options: opts(256, 2, 15),
                want: vec![vec!["old1", "old2"]],
            },
            Case {
                name: "young files do not count towards the threshold",
                files: files("old:1:60 new1:1:5 new2:1:5"),
                options: opts(256, 2, 15),
                want: vec![],
            },
            Case {
                name: "large files are not inputs",
                files: files("big:200:60 exact:256:60 s1:10:60 s2:10:60"),
                options: opts(256, 2, 0),
                want: vec![vec!["s1", "s2"]],
            },
            Case {
                name: "first-fit decreasing: outputs never pass the target",
                files: files("a:150:60 b:120:60 c:100:60 d:90:60 e:10:60"),
                options: opts(256, 2, 0),
                // a(150)+c(100)=250; b(120)+d(90)+e(10)=220
                want: vec![vec!["a", "c"], vec!["b", "d", "e"]],
            },
            Case {
                name: "an output of one file is dropped",
                files: files("a:180:60 b:180:60 c:10:60"),
                options: opts(256, 2, 0),
                // a+c = 190, b alone: dropped
                want: vec![vec!["a", "c"]],
            },
        ];
        for c in cases {
            let got = plan_partition(&c.files, &c.options);
            assert_eq!(paths(&got), c.want, "{}", c.name);
            for b in &got {
                assert!(b.bytes <= c.options.target_size, "{}", c.name);
                assert_eq!(b.bytes, b.inputs.iter().map(|i| i.size).sum::<u64>());
            }
        }
    }

    #[test]
    fn a_plan_does_not_depend_on_the_order_of_the_listing() {
        let mut files: Vec<Candidate> = (0..40)
            .map(|i| file(&format!("f{i:02}"), 1 + (i * 7) % 60, 60))
            .collect();
        let o = opts(128, 4, 0);
        let a = plan_partition(&files, &o);
        files.reverse();
        let b = plan_partition(&files, &o);
        assert_eq!(a, b);
        let planned: usize = a.iter().map(|b| b.inputs.len()).sum();
        assert!(planned >= 38, "nearly every file is merged: {planned}");
    }
}
