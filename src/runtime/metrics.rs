//! Per-epoch metrics: a JSON-lines log (`{"epoch":3,"recon_error":0.071,...}`, one line per
//! epoch, metric names in sorted order) and a PNG plot with one panel per metric vs epoch.
//! Invariant: every appended line is flushed before `append` returns, so a killed run loses at
//! most the epoch in progress; on resume the log is cut back to the last checkpointed epoch
//! (dropping a torn last line too), so epochs are never duplicated.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::checkpoint::{atomic_write, WriteFileError};
use super::font::{draw_text, text_width, GLYPH_H};
use super::image::{write_png, Raster, WriteImageError};

/// Metrics of one epoch. Non-finite values are written as JSON `null` and read back as NaN.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochRecord {
    pub epoch: u64,
    pub metrics: BTreeMap<String, f64>,
}

impl EpochRecord {
    pub fn new(epoch: u64, metrics: &[(&str, f64)]) -> EpochRecord {
        EpochRecord {
            epoch,
            metrics: metrics.iter().map(|&(k, v)| (k.to_string(), v)).collect(),
        }
    }

    /// The record as one JSON object with `epoch` first, then metrics in name order.
    pub fn to_json_line(&self) -> String {
        let mut s = format!("{{\"epoch\":{}", self.epoch);
        for (k, v) in &self.metrics {
            let key = serde_json::to_string(k).expect("a string always serializes");
            let val = if v.is_finite() {
                serde_json::to_string(v).expect("finite f64")
            } else {
                "null".into()
            };
            s.push_str(&format!(",{key}:{val}"));
        }
        s.push('}');
        s
    }

    /// Parses one log line; `None` for a torn or foreign line.
    pub fn from_json_line(line: &str) -> Option<EpochRecord> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let obj = v.as_object()?;
        let epoch = obj.get("epoch")?.as_u64()?;
        let mut metrics = BTreeMap::new();
        for (k, v) in obj.iter().filter(|(k, _)| *k != "epoch") {
            metrics.insert(k.clone(), v.as_f64().unwrap_or(f64::NAN));
        }
        Some(EpochRecord { epoch, metrics })
    }
}

/// Why the metrics log could not be used.
#[derive(Debug, Error)]
pub enum MetricsError {
    #[error("cannot use metrics log `{path}`: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Write(#[from] WriteFileError),
    #[error(transparent)]
    Image(#[from] WriteImageError),
}

/// An open metrics log; keeps every record in memory for plotting.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: File,
    records: Vec<EpochRecord>,
}

impl MetricsLog {
    /// Starts a fresh log, replacing any old one.
    pub fn create(path: &Path) -> Result<MetricsLog, MetricsError> {
        atomic_write(path, b"")?;
        Self::open_append(path, Vec::new())
    }

    /// Continues a log after resuming from a checkpoint taken after `last_epoch`: keeps the
    /// records with `epoch <= last_epoch`, drops the rest (they will be redone) and any torn
    /// line. A missing log starts empty.
    pub fn resume(path: &Path, last_epoch: u64) -> Result<MetricsLog, MetricsError> {
        let kept: Vec<EpochRecord> = read_log(path)?
            .into_iter()
            .filter(|r| r.epoch <= last_epoch)
            .collect();
        let text: String = kept.iter().map(|r| r.to_json_line() + "\n").collect();
        atomic_write(path, text.as_bytes())?;
        Self::open_append(path, kept)
    }

    fn open_append(path: &Path, records: Vec<EpochRecord>) -> Result<MetricsLog, MetricsError> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|source| MetricsError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            file,
            records,
        })
    }

    /// Appends one epoch's record and flushes it to disk.
    pub fn append(&mut self, record: EpochRecord) -> Result<(), MetricsError> {
        let line = record.to_json_line() + "\n";
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|source| MetricsError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.records.push(record);
        Ok(())
    }

    pub fn records(&self) -> &[EpochRecord] {
        &self.records
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Plots every metric so far (see [`plot_metrics`]).
    pub fn plot(&self, path: &Path) -> Result<(), MetricsError> {
        plot_metrics(&self.records, path)
    }
}

/// Reads a metrics log, skipping lines that do not parse (a torn last line after a kill).
/// A missing file is an empty log.
pub fn read_log(path: &Path) -> Result<Vec<EpochRecord>, MetricsError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(EpochRecord::from_json_line)
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(MetricsError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

const PANEL_W: usize = 640;
const PANEL_H: usize = 220;
const LEFT: usize = 80;
const RIGHT: usize = 20;
const TOP: usize = 28;
const BOTTOM: usize = 32;
const PALETTE: [[u8; 3]; 6] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [148, 103, 189],
    [255, 127, 14],
    [23, 190, 207],
];

struct Canvas {
    img: Raster,
}

impl Canvas {
    fn put(&mut self, x: usize, y: usize, c: [u8; 3]) {
        if x < self.img.width && y < self.img.height {
            let i = (y * self.img.width + x) * 3;
            self.img.pixels[i..i + 3].copy_from_slice(&c);
        }
    }

    fn text(&mut self, s: &str, x: usize, y: usize, scale: usize, c: [u8; 3]) {
        let mut pts = Vec::new();
        draw_text(s, x, y, scale, |px, py| pts.push((px, py)));
        for (px, py) in pts {
            self.put(px, py, c);
        }
    }

    /// Bresenham line, drawn 2 px thick so it survives down-scaling in viewers.
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3]) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            for (ox, oy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                if x + ox >= 0 && y + oy >= 0 {
                    self.put((x + ox) as usize, (y + oy) as usize, c);
                }
            }
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }
}

/// "Nice" tick positions (1, 2 or 5 times a power of ten) covering `[lo, hi]`, about `n` of them.
pub fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).max(f64::EPSILON * lo.abs().max(1.0));
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// A tick label with as many decimals as the tick step needs (scientific when extreme).
pub fn format_tick(v: f64, step: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if v.abs() >= 1e6 || step < 1e-4 {
        return format!("{v:.2e}");
    }
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    format!("{v:.decimals$}")
}

/// Draws one panel per metric (metric names in sorted order), each a polyline vs epoch with
/// axes, ticks and labels, and writes it as PNG atomically. NaN values break the line.
pub fn plot_metrics(records: &[EpochRecord], path: &Path) -> Result<(), MetricsError> {
    let names: Vec<&String> = {
        let mut set: Vec<&String> = records.iter().flat_map(|r| r.metrics.keys()).collect();
        set.sort();
        set.dedup();
        set
    };
    if names.is_empty() {
        return Err(WriteImageError::Empty("no metrics to plot".into()).into());
    }
    let width = PANEL_W;
    let height = PANEL_H * names.len();
    let mut cv = Canvas {
        img: Raster {
            width,
            height,
            channels: 3,
            pixels: vec![255; width * height * 3],
        },
    };
    let (e_lo, e_hi) = records.iter().fold((u64::MAX, 0), |(lo, hi), r| {
        (lo.min(r.epoch), hi.max(r.epoch))
    });
    let (e_lo, e_hi) = if e_lo < e_hi {
        (e_lo as f64, e_hi as f64)
    } else {
        (e_lo as f64 - 1.0, e_lo as f64 + 1.0)
    };
    let black = [0, 0, 0];
    let grey = [225, 225, 225];
    for (p, name) in names.iter().enumerate() {
        let pts: Vec<(f64, f64)> = records
            .iter()
            .filter_map(|r| r.metrics.get(*name).map(|&v| (r.epoch as f64, v)))
            .collect();
        let finite: Vec<f64> = pts.iter().map(|p| p.1).filter(|v| v.is_finite()).collect();
        let (mut lo, mut hi) = finite
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        } else if hi - lo <= 1e-12 * lo.abs().max(1.0) {
            (lo, hi) = (lo - 0.5 * lo.abs().max(1e-3), hi + 0.5 * hi.abs().max(1e-3));
        } else {
            let pad = 0.05 * (hi - lo);
            (lo, hi) = (lo - pad, hi + pad);
        }
        let y0 = p * PANEL_H;
        let (px0, px1) = (LEFT, PANEL_W - RIGHT);
        let (py0, py1) = (y0 + TOP, y0 + PANEL_H - BOTTOM);
        let sx = |e: f64| px0 as f64 + (e - e_lo) / (e_hi - e_lo) * (px1 - px0) as f64;
        let sy = |v: f64| py1 as f64 - (v - lo) / (hi - lo) * (py1 - py0) as f64;
        cv.text(name, LEFT, y0 + 8, 2, black);
        let yt = nice_ticks(lo, hi, 5);
        let ystep = if yt.len() > 1 { yt[1] - yt[0] } else { hi - lo };
        for &t in &yt {
            let y = sy(t).round() as usize;
            for x in px0..=px1 {
                cv.put(x, y, grey);
            }
            for x in px0 - 4..px0 {
                cv.put(x, y, black);
            }
            let label = format_tick(t, ystep);
            let lx = (px0 - 6).saturating_sub(text_width(&label, 1));
            cv.text(&label, lx, y.saturating_sub(GLYPH_H / 2), 1, black);
        }
        let xt: Vec<f64> = nice_ticks(e_lo, e_hi, 8)
            .into_iter()
            .filter(|t| t.fract() == 0.0)
            .collect();
        for &t in &xt {
            let x = sx(t).round() as usize;
            for y in py1..py1 + 4 {
                cv.put(x, y, black);
            }
            let label = format!("{}", t as i64);
            cv.text(
                &label,
                x.saturating_sub(text_width(&label, 1) / 2),
                py1 + 7,
                1,
                black,
            );
        }
        let xl = "epoch";
        cv.text(
            xl,
            px1.saturating_sub(text_width(xl, 1)),
            py1 + 7 + GLYPH_H + 3,
            1,
            black,
        );
        for x in px0..=px1 {
            cv.put(x, py1, black);
        }
        for y in py0..=py1 {
            cv.put(px0, y, black);
        }
        let color = PALETTE[p % PALETTE.len()];
        let mut prev: Option<(i64, i64)> = None;
        for &(e, v) in &pts {
            if !v.is_finite() {
                prev = None;
                continue;
            }
            let cur = (sx(e).round() as i64, sy(v).round() as i64);
            match prev {
                Some(a) => cv.line(a, cur, color),
                // A lone point still shows, as a small square.
                None => cv.line((cur.0 - 1, cur.1 - 1), (cur.0 + 1, cur.1 - 1), color),
            }
            prev = Some(cur);
        }
    }
    write_png(path, &cv.img)?;
    Ok(())
}
