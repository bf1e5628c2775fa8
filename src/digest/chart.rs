//! The digest's chart: hits per category over the last [`DAYS`] days, for one route.
//!
//! The chart is a small PNG (stacked bars, one per day, one colour per category) sent as an
//! inline part of the message and referenced from the HTML by `cid:` (many mail clients block
//! `data:` URIs and external images). The image carries no text at all: it is drawn with
//! `plotters`' bitmap backend without fonts, so it needs no system font and renders the same
//! everywhere. Its legend and numbers are an HTML table beside it (which also serves clients that
//! block images) and the same numbers are a small table in the text part.
//!
//! Counts are per route, like the digest itself: a force's PSD sees only its own force's
//! figures, the default route those of unknown and unrouted forces. A day is the UTC date a hit
//! was found (retrieved); every hit counts, whether already sent or reviewed or not, and a hit in
//! several categories counts once in each of them.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use plotters::prelude::*;
use serde::Serialize;
use sha2::Digest as _;

use crate::config::Config;
use crate::model::Category;
use crate::store::HitRecord;

/// Days shown, today included.
pub const DAYS: usize = 14;
/// Domain part of the chart's Content-ID (`chart.<hash>@CONTENT_ID_DOMAIN`).
pub const CONTENT_ID_DOMAIN: &str = "exposure-monitor.invalid";
/// Size of the image in pixels.
pub const WIDTH: u32 = 560;
pub const HEIGHT: u32 = 160;

/// The colour of each category's bars and legend swatch (Okabe-Ito, then two more that stay
/// apart from them), in taxonomy order.
pub fn colour(c: Category) -> (u8, u8, u8) {
    match c {
        Category::Operational => (0xD5, 0x5E, 0x00),
        Category::PersonalData => (0x00, 0x72, 0xB2),
        Category::MediaContact => (0xE6, 0x9F, 0x00),
        Category::DiscriminatoryOffensive => (0xCC, 0x79, 0xA7),
        Category::AlcoholDrugs => (0x00, 0x9E, 0x73),
        Category::SexualNudity => (0x56, 0xB4, 0xE9),
        Category::Political => (0xF0, 0xE4, 0x42),
        Category::GiftsHospitality => (0x8C, 0x56, 0x4B),
        Category::SecondaryEmployment => (0x7F, 0x7F, 0x7F),
    }
}

fn hex((r, g, b): (u8, u8, u8)) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// What one day holds for one route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Day {
    /// Distinct hits found that day.
    hits: u64,
    by_category: BTreeMap<Category, u64>,
}

/// Hits per route, day and category over the [`DAYS`] days that end on `today`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    today: NaiveDate,
    routes: BTreeMap<String, BTreeMap<NaiveDate, Day>>,
}

impl History {
    /// An empty history for the window that ends on the UTC date of `now`.
    pub fn new(now: DateTime<Utc>) -> History {
        History { today: now.date_naive(), routes: BTreeMap::new() }
    }

    /// The first instant of the window: midnight UTC, [`DAYS`]` - 1` days before today.
    pub fn since(&self) -> DateTime<Utc> {
        self.first_day().and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
    }

    fn first_day(&self) -> NaiveDate {
        self.today - Duration::days(DAYS as i64 - 1)
    }

    /// Count one hit found on `day` for `route` (outside the window: ignored).
    pub fn add(&mut self, route: &str, day: NaiveDate, categories: &[Category]) {
        self.add_n(route, day, categories, 1);
    }

    /// Count `n` hits with the same categories found on `day` for `route`.
    pub fn add_n(&mut self, route: &str, day: NaiveDate, categories: &[Category], n: u64) {
        if day < self.first_day() || day > self.today || n == 0 {
            return;
        }
        let d = self.routes.entry(route.to_string()).or_default().entry(day).or_default();
        d.hits += n;
        let mut cats = categories.to_vec();
        cats.sort_unstable();
        cats.dedup();
        for c in cats {
            *d.by_category.entry(c).or_default() += n;
        }
    }

    /// The history of `hits`, each counted for the route the digest sends it to (see
    /// [`Routing::route_for`](crate::config::Routing::route_for)).
    pub fn from_hits(config: &Config, hits: &[HitRecord], now: DateTime<Utc>) -> History {
        History::from_rows(config, hits.iter().map(|h| (h.force.as_deref(), h.retrieved_at, h.categories.as_slice())), now)
    }

    /// The same from (force, retrieval time, categories) rows, e.g.
    /// [`crate::store::Store::hit_categories_since`].
    pub fn from_rows<'a>(
        config: &Config,
        rows: impl IntoIterator<Item = (Option<&'a str>, DateTime<Utc>, &'a [Category])>,
        now: DateTime<Utc>,
    ) -> History {
        let mut h = History::new(now);
        for (force, retrieved_at, categories) in rows {
            let route = config.routing.route_for(force).0.unwrap_or(super::DEFAULT_ROUTE);
            h.add(route, retrieved_at.date_naive(), categories);
        }
        h
    }

    /// The same from counts per (force, day found, categories), e.g.
    /// [`crate::store::Store::found_per_day`].
    pub fn from_counts<'a>(
        config: &Config,
        rows: impl IntoIterator<Item = (Option<&'a str>, NaiveDate, &'a [Category], u64)>,
        now: DateTime<Utc>,
    ) -> History {
        let mut h = History::new(now);
        for (force, day, categories, n) in rows {
            let route = config.routing.route_for(force).0.unwrap_or(super::DEFAULT_ROUTE);
            h.add_n(route, day, categories, n);
        }
        h
    }

    /// What the templates show for `route`, or `None` when it had no hit in the window.
    pub fn view(&self, route: &str) -> Option<ChartView> {
        let days = self.routes.get(route).filter(|d| d.values().any(|d| d.hits > 0))?;
        let dates: Vec<NaiveDate> = (0..DAYS as i64).map(|i| self.first_day() + Duration::days(i)).collect();
        let rows: Vec<ChartRow> = Category::ALL
            .iter()
            .filter_map(|&c| {
                let counts: Vec<u64> =
                    dates.iter().map(|d| days.get(d).and_then(|d| d.by_category.get(&c)).copied().unwrap_or(0)).collect();
                let total: u64 = counts.iter().sum();
                (total > 0).then(|| ChartRow {
                    category: c.as_str().replace('_', " "),
                    colour: hex(colour(c)),
                    counts,
                    total,
                    key: c,
                })
            })
            .collect();
        let hits: Vec<u64> = dates.iter().map(|d| days.get(d).map_or(0, |d| d.hits)).collect();
        let stacked_max = (0..DAYS).map(|i| rows.iter().map(|r| r.counts[i]).sum::<u64>()).max().unwrap_or(0);
        let grid_step = grid_step(stacked_max);
        let total_hits = hits.iter().sum();
        let mut v = ChartView {
            content_id: String::new(),
            width: WIDTH,
            height: HEIGHT,
            from: dates[0].format("%-d %b %Y").to_string(),
            to: dates[DAYS - 1].format("%-d %b %Y").to_string(),
            days: dates.iter().map(|d| d.format("%d").to_string()).collect(),
            alt: format!(
                "Bar chart: {total_hits} hit{} in the last {DAYS} days by category; the numbers are in the table below.",
                if total_hits == 1 { "" } else { "s" }
            ),
            rows,
            hits,
            total_hits,
            grid_step,
            y_max: stacked_max.div_ceil(grid_step).max(1) * grid_step,
            text_table: String::new(),
        };
        v.text_table = v.to_text();
        // Unique to the route and its figures (RFC 2392 wants Content-IDs unique; some clients
        // cache images by it), and the same for the same chart.
        let digest = sha2::Sha256::digest(format!("{route}\0{}", v.text_table).as_bytes());
        let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
        v.content_id = format!("chart.{hex}@{CONTENT_ID_DOMAIN}");
        Some(v)
    }
}

/// Grid line spacing (1, 2, 5, 10, 20, 50, ...) giving at most five lines up to `max`.
fn grid_step(max: u64) -> u64 {
    let mut step = 1;
    loop {
        for m in [1, 2, 5] {
            if max <= step * m * 5 {
                return step * m;
            }
        }
        step *= 10;
    }
}

/// One category's row of the chart's table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChartRow {
    /// e.g. "personal data".
    pub category: String,
    /// `#rrggbb`, the bars' colour.
    pub colour: String,
    /// Hits per day, oldest first.
    pub counts: Vec<u64>,
    pub total: u64,
    #[serde(skip)]
    pub key: Category,
}

/// The chart as the templates see it, and what the image is drawn from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChartView {
    /// The image part's Content-ID, which the HTML shows as `cid:...`.
    pub content_id: String,
    pub width: u32,
    pub height: u32,
    /// First and last day shown, e.g. "9 Nov 2026".
    pub from: String,
    pub to: String,
    /// Day of the month of each column, oldest first.
    pub days: Vec<String>,
    /// Categories with at least one hit in the window, in taxonomy order.
    pub rows: Vec<ChartRow>,
    /// Distinct hits per day (a hit in two categories counts once here).
    pub hits: Vec<u64>,
    pub total_hits: u64,
    /// Hits between two grid lines of the image.
    pub grid_step: u64,
    /// The value at the top of the image.
    pub y_max: u64,
    pub alt: String,
    /// The same numbers as a fixed-width table, for the text part.
    pub text_table: String,
}

impl ChartView {
    /// The table of the text part: one row per category, one column per day (`.` for none).
    fn to_text(&self) -> String {
        let label_w = self.rows.iter().map(|r| r.category.chars().count()).max().unwrap_or(0).max("all hits".len());
        let cell = |n: u64| if n == 0 { ".".to_string() } else { n.to_string() };
        let mut out = format!("Hits per category, {} to {} (by day found, UTC):\n", self.from, self.to);
        let mut line = format!("  {:label_w$}", "");
        for d in &self.days {
            line.push_str(&format!(" {d:>2}"));
        }
        line.push_str("  total");
        out.push_str(line.trim_end());
        out.push('\n');
        let mut row = |label: &str, counts: &[u64], total: u64| {
            let mut line = format!("  {label:label_w$}");
            for &n in counts {
                line.push_str(&format!(" {:>2}", cell(n)));
            }
            line.push_str(&format!("  {total:>5}"));
            out.push_str(&line);
            out.push('\n');
        };
        for r in &self.rows {
            row(&r.category, &r.counts, r.total);
        }
        row("all hits", &self.hits, self.total_hits);
        out.push_str("  (. = none; a hit in several categories counts in each of them, and once in \"all hits\")\n");
        out
    }

    /// The image part of the message: [`ChartView::png`] under [`ChartView::content_id`].
    pub fn image(&self) -> anyhow::Result<InlineImage> {
        Ok(InlineImage { content_id: self.content_id.clone(), png: self.png()? })
    }

    /// The chart as a PNG: one stacked bar per day, bottom to top in the table's row order,
    /// light grid lines every [`ChartView::grid_step`] hits. No text is drawn.
    pub fn png(&self) -> anyhow::Result<Vec<u8>> {
        let (w, h) = (self.width, self.height);
        let mut rgb = vec![0u8; w as usize * h as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
            let err = |e: DrawingAreaErrorKind<_>| anyhow::anyhow!("drawing the chart: {e}");
            root.fill(&WHITE).map_err(err)?;
            let mut chart = ChartBuilder::on(&root)
                .margin(6)
                .build_cartesian_2d(0f64..DAYS as f64, 0f64..self.y_max as f64)
                .map_err(|e| anyhow::anyhow!("drawing the chart: {e}"))?;
            let grid = RGBColor(0xdd, 0xdd, 0xdd);
            let lines = (1..=self.y_max / self.grid_step).map(|k| {
                let y = (k * self.grid_step) as f64;
                PathElement::new(vec![(0.0, y), (DAYS as f64, y)], grid.stroke_width(1))
            });
            chart.draw_series(lines).map_err(|e| anyhow::anyhow!("drawing the chart: {e}"))?;
            let mut bars = vec![];
            for day in 0..DAYS {
                let mut y = 0u64;
                for r in &self.rows {
                    let n = r.counts[day];
                    if n == 0 {
                        continue;
                    }
                    let (cr, cg, cb) = colour(r.key);
                    let x = day as f64;
                    bars.push(Rectangle::new([(x + 0.15, y as f64), (x + 0.85, (y + n) as f64)], RGBColor(cr, cg, cb).filled()));
                    y += n;
                }
            }
            chart.draw_series(bars).map_err(|e| anyhow::anyhow!("drawing the chart: {e}"))?;
            let axis = RGBColor(0x44, 0x44, 0x44);
            chart
                .draw_series(std::iter::once(PathElement::new(vec![(0.0, 0.0), (DAYS as f64, 0.0)], axis.stroke_width(2))))
                .map_err(|e| anyhow::anyhow!("drawing the chart: {e}"))?;
            root.present().map_err(err)?;
        }
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header()?;
        writer.write_image_data(&rgb)?;
        writer.finish()?;
        Ok(out)
    }
}

/// An image sent as an inline part of the message, shown by the HTML as `cid:<content_id>`.
#[derive(Clone, PartialEq, Eq)]
pub struct InlineImage {
    /// Without the angle brackets.
    pub content_id: String,
    pub png: Vec<u8>,
}

impl std::fmt::Debug for InlineImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InlineImage({}, {} bytes of PNG)", self.content_id, self.png.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 7, 0, 0).unwrap()
    }

    fn day(d: u32) -> NaiveDate {
        if d >= 18 {
            NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
        } else {
            NaiveDate::from_ymd_opt(2026, 12, d).unwrap()
        }
    }

    fn sample() -> History {
        let mut h = History::new(now());
        h.add("Kent Police", day(1), &[Category::Operational, Category::PersonalData]);
        h.add("Kent Police", day(1), &[Category::Operational]);
        h.add("Kent Police", day(20), &[Category::MediaContact]);
        // Outside the window on both sides.
        h.add("Kent Police", day(17), &[Category::Political]);
        h.add("Kent Police", NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(), &[Category::Political]);
        h.add("Thames Valley Police", day(1), &[Category::SexualNudity]);
        h
    }

    #[test]
    fn window_is_fourteen_days_ending_today() {
        let h = History::new(now());
        assert_eq!(h.since(), Utc.with_ymd_and_hms(2026, 11, 18, 0, 0, 0).unwrap());
        let v = sample().view("Kent Police").unwrap();
        assert_eq!(v.days.len(), DAYS);
        assert_eq!((v.days[0].as_str(), v.days[13].as_str()), ("18", "01"));
        assert_eq!((v.from.as_str(), v.to.as_str()), ("18 Nov 2026", "1 Dec 2026"));
    }

    #[test]
    fn counts_per_route_day_and_category() {
        let v = sample().view("Kent Police").unwrap();
        let cats: Vec<&str> = v.rows.iter().map(|r| r.category.as_str()).collect();
        assert_eq!(cats, vec!["operational", "personal data", "media contact"], "taxonomy order, political was outside");
        assert_eq!(v.rows[0].counts[13], 2);
        assert_eq!(v.rows[1].counts[13], 1);
        assert_eq!(v.rows[2].counts[2], 1);
        assert_eq!(v.rows.iter().map(|r| r.total).collect::<Vec<_>>(), vec![2, 1, 1]);
        assert_eq!(v.hits[13], 2, "distinct hits");
        assert_eq!(v.total_hits, 3);
        assert_eq!((v.y_max, v.grid_step), (3, 1));
        assert_eq!(v.rows[0].colour, "#d55e00");
        let tvp = sample().view("Thames Valley Police").unwrap();
        assert_eq!(tvp.total_hits, 1);
        assert_eq!(tvp.rows.len(), 1);
        assert!(sample().view("Essex Police").is_none());
        assert!(sample().view(super::super::DEFAULT_ROUTE).is_none());
        // Content-IDs: valid, distinct per route and figures, stable for the same chart.
        assert!(v.content_id.starts_with("chart.") && v.content_id.ends_with("@exposure-monitor.invalid"), "{}", v.content_id);
        assert!(v.content_id.chars().all(|c| c.is_ascii_alphanumeric() || ".@-".contains(c)));
        assert_ne!(v.content_id, tvp.content_id);
        assert_eq!(v.content_id, sample().view("Kent Police").unwrap().content_id);
    }

    #[test]
    fn from_hits_routes_like_the_digest() {
        use crate::digest::render::tests::hit;
        let mut forces = BTreeMap::new();
        forces.insert("Kent Police".to_string(), vec!["psd@kent.example".to_string()]);
        let mut cfg = crate::digest::tests::config(true);
        cfg.routing.forces = forces;
        let mut a = hit(1, Some("Kent Police"), "a", "raid", &["raid"]);
        a.retrieved_at = now();
        let mut b = hit(2, Some("Essex Police"), "b", "raid", &["raid"]);
        b.retrieved_at = now() - Duration::days(3);
        let mut c = hit(3, None, "c", "raid", &["raid"]);
        c.retrieved_at = now() - Duration::days(20);
        let h = History::from_hits(&cfg, &[a, b, c], now());
        assert_eq!(h.view("Kent Police").unwrap().hits[13], 1);
        let d = h.view(super::super::DEFAULT_ROUTE).unwrap();
        assert_eq!(d.total_hits, 1, "Essex is unrouted; the unknown-force hit is too old");
        assert_eq!(d.hits[10], 1);
    }

    #[test]
    fn text_table_has_the_same_numbers() {
        let v = sample().view("Kent Police").unwrap();
        let t = &v.text_table;
        assert!(t.starts_with("Hits per category, 18 Nov 2026 to 1 Dec 2026"), "{t}");
        let row = |label: &str| -> Vec<String> {
            let line = t.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("{label} in {t}"));
            line.trim_start()[label.len()..].split_whitespace().map(str::to_string).collect()
        };
        let op = row("operational");
        assert_eq!(op.len(), DAYS + 1, "{t}");
        assert_eq!(op[13], "2");
        assert_eq!(op[0], ".");
        assert_eq!(op[14], "2");
        assert_eq!(row("media contact")[2], "1");
        assert_eq!(row("all hits")[14], "3");
        let header = t.lines().nth(1).unwrap();
        assert!(header.trim_start().starts_with("18 19 20"), "{header}");
    }

    #[test]
    fn grid_steps_are_round() {
        assert_eq!(grid_step(0), 1);
        assert_eq!(grid_step(5), 1);
        assert_eq!(grid_step(6), 2);
        assert_eq!(grid_step(11), 5);
        assert_eq!(grid_step(26), 10);
        assert_eq!(grid_step(240), 50);
    }

    fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes)).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    #[test]
    fn png_draws_stacked_bars_in_category_colours() {
        let v = sample().view("Kent Police").unwrap();
        let png_bytes = v.png().unwrap();
        assert!(png_bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(png_bytes.len() < 20_000, "{} bytes", png_bytes.len());
        let (w, h, px) = decode(&png_bytes);
        assert_eq!((w, h), (WIDTH, HEIGHT));
        let at = |x: u32, y: u32| -> (u8, u8, u8) {
            let i = ((y * w + x) * 3) as usize;
            (px[i], px[i + 1], px[i + 2])
        };
        // Column of each day's bar centre; which colours does it cross?
        let plot_w = (w - 12) as f64;
        let column = |d: usize| -> Vec<(u8, u8, u8)> {
            let x = 6 + ((d as f64 + 0.5) / DAYS as f64 * plot_w) as u32;
            let mut seen: Vec<(u8, u8, u8)> = vec![];
            for y in 0..h {
                let c = at(x, y);
                if !seen.contains(&c) {
                    seen.push(c);
                }
            }
            seen
        };
        let today = column(13);
        assert!(today.contains(&colour(Category::Operational)), "{today:?}");
        assert!(today.contains(&colour(Category::PersonalData)), "{today:?}");
        assert!(!today.contains(&colour(Category::MediaContact)));
        assert!(column(2).contains(&colour(Category::MediaContact)));
        let empty = column(5);
        for c in Category::ALL {
            assert!(!empty.contains(&colour(*c)), "no bar on an empty day: {empty:?}");
        }
        // Today's bar (3 of 3) reaches higher than day 3's (1 of 3): count coloured rows.
        let height = |d: usize| {
            let x = 6 + ((d as f64 + 0.5) / DAYS as f64 * plot_w) as u32;
            (0..h).filter(|&y| Category::ALL.iter().any(|c| at(x, y) == colour(*c))).count()
        };
        let (tall, short) = (height(13), height(2));
        assert!(tall > 2 * short && short > 20, "today {tall} px, day 3 {short} px");
    }
}
