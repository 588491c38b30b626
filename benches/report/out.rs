//! The report's rows and how they are printed.

/// One row of a targets table.
pub struct Row {
    pub workload: String,
    pub target: String,
    pub measured: String,
    pub met: Option<bool>,
}

pub fn row(workload: &str, target: &str, measured: String, met: Option<bool>) -> Row {
    Row {
        workload: workload.to_string(),
        target: target.to_string(),
        measured,
        met,
    }
}

/// `rows` as a Markdown table.
pub fn print_targets(rows: &[Row]) {
    println!("| workload | target | measured | met |");
    println!("|---|---|---|---|");
    for r in rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        println!(
            "| {} | {} | {} | {met} |",
            md(&r.workload),
            md(&r.target),
            md(&r.measured)
        );
    }
}

/// A name as Markdown: a type with generics in backticks, so that its `<...>`
/// is not taken for an HTML tag.
pub fn md(text: &str) -> String {
    text.replace("RwLock<HashMap>", "`RwLock<HashMap>`")
        .replace("Arc<S>", "`Arc<S>`")
}

pub fn human(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

pub fn us(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else {
        format!("{:.1} µs", ns as f64 / 1e3)
    }
}

/// What the machine is, as far as the report can tell.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or_else(String::new, |kb| {
            format!(", {:.0} GiB", kb / 1024.0 / 1024.0)
        });
    format!(
        "# pcbhash performance report\n\nmachine: {cpu}, {cores} cores{memory}; {} build; one run, ratios from the same run",
        if cfg!(debug_assertions) { "debug" } else { "release" }
    )
}
