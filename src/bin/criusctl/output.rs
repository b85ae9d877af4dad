//! Output formats shared by the commands (`-o json|yaml|table`).

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Yaml,
    Table,
}

/// Adds a runtime's verbose `info` (JSON strings by key) to `doc` as values,
/// the way crictl's inspect commands show it; keys in sorted order.
pub fn splice_info(
    doc: &mut serde_json::Map<String, serde_json::Value>,
    info: std::collections::HashMap<String, String>,
) {
    let mut entries: Vec<(String, String)> = info.into_iter().collect();
    entries.sort();
    for (key, raw) in entries {
        let value = serde_json::from_str(&raw).unwrap_or(serde_json::Value::String(raw));
        doc.insert(key, value);
    }
}

/// Prints inspect documents: one as is, several as an array; JSON unless YAML
/// is asked for.
pub fn print_documents(mut docs: Vec<serde_json::Value>, format: Format) -> anyhow::Result<()> {
    let value = if docs.len() == 1 {
        docs.remove(0)
    } else {
        serde_json::Value::Array(docs)
    };
    print_structured(
        &value,
        if format == Format::Table {
            Format::Json
        } else {
            format
        },
    )
}

/// Prints `value` as pretty JSON or YAML.
pub fn print_structured<T: Serialize>(value: &T, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Yaml => print!("{}", serde_yaml_ng::to_string(value)?),
        _ => println!("{}", serde_json::to_string_pretty(value)?),
    }
    Ok(())
}

/// Prints rows under a header, columns padded like crictl's tables.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", text.join("   ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// "5 seconds ago", as crictl shows creation times.
pub fn ago(nanos: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let secs = ((now - nanos) / 1_000_000_000).max(0);
    let (n, unit) = match secs {
        s if s < 60 => (s, "second"),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86400 => (s / 3600, "hour"),
        s => (s / 86400, "day"),
    };
    if n == 1 {
        format!("1 {unit} ago")
    } else {
        format!("{n} {unit}s ago")
    }
}

/// Decimal units with 3 significant digits, as crictl prints sizes.
pub fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < units.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    let text = format!("{value:.3}");
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    let text = format!("{:.*}", digits, text.parse::<f64>().unwrap_or(value));
    let text = text.trim_end_matches('0').trim_end_matches('.').to_string();
    format!("{text}{}", units[unit])
}
