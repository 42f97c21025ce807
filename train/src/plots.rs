//! Training plots (plotters, drawn in memory, written as PNG atomically): the loss curves of a
//! GAN run and, for 2-D data, a scatter of generated points over the real modes.
//!
//! Text is set in DejaVu Sans, built into the binary (`train/assets/`, Bitstream Vera licence),
//! so plots look the same on a machine with no fonts installed.

use std::path::Path;
use std::sync::Once;

use anyhow::Context as _;
use plotters::prelude::*;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const SIZE: (u32, u32) = (800, 500);

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is part of the binary; it parses, or no plot could have been drawn in testing.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// One point of a loss curve: training progress in epochs and the mean losses since the last point.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CurvePoint {
    pub epoch: f64,
    pub d_loss: f64,
    pub g_loss: f64,
}

/// Renders with `draw` into an RGB buffer and writes it to `path` as PNG, atomically.
fn render(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, plotters::coord::Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    register_font();
    let mut buf = vec![0u8; (size.0 * size.1 * 3) as usize];
    {
        let area = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        area.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
        draw(&area)?;
        area.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let img = image::RgbImage::from_raw(size.0, size.1, buf).context("plot buffer has the wrong size")?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    kiln_infer::fsx::write_atomic(path, &png).with_context(|| format!("cannot write {}", path.display()))
}

/// D's and G's losses against epochs; the dashed line is ln 4 ≈ 1.386, D's loss at the
/// equilibrium D = 1/2 (and ln 2 ≈ 0.693 for G's non-saturating loss).
pub fn loss_curve(path: &Path, curve: &[CurvePoint], title: &str) -> anyhow::Result<()> {
    let e = |err: &dyn std::fmt::Display| anyhow::anyhow!("drawing {}: {err}", path.display());
    render(path, SIZE, |area| {
        let x_max = curve.last().map_or(1.0, |p| p.epoch).max(1e-3);
        let ys = curve.iter().flat_map(|p| [p.d_loss, p.g_loss]).filter(|v| v.is_finite());
        let (lo, hi) = ys.fold((0f64, 1.5f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..x_max, lo..hi * 1.05)
            .map_err(|err| e(&err))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("loss")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|err| e(&err))?;
        let ln4 = 4f64.ln();
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, ln4), (x_max, ln4)],
                6,
                4,
                BLACK.mix(0.4).stroke_width(1),
            ))
            .map_err(|err| e(&err))?;
        for (name, color, get) in [
            ("D loss", RED, (|p: &CurvePoint| p.d_loss) as fn(&CurvePoint) -> f64),
            ("G loss", BLUE, |p: &CurvePoint| p.g_loss),
        ] {
            chart
                .draw_series(LineSeries::new(curve.iter().map(|p| (p.epoch, get(p))), color.stroke_width(2)))
                .map_err(|err| e(&err))?
                .label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|err| e(&err))?;
        Ok(())
    })
}

/// Generated 2-D points (`[x, y]` pairs, blue) over the modes' 3σ circles (red).
pub fn scatter(
    path: &Path,
    points: &[f32],
    means: &[[f32; 2]],
    sigma: f32,
    title: &str,
) -> anyhow::Result<()> {
    let e = |err: &dyn std::fmt::Display| anyhow::anyhow!("drawing {}: {err}", path.display());
    render(path, (600, 600), |area| {
        let r = means.iter().flatten().fold(0f32, |a, v| a.max(v.abs())) * 1.5 + 0.5;
        let r = r as f64;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(-r..r, -r..r)
            .map_err(|err| e(&err))?;
        chart.configure_mesh().label_style(("sans-serif", 13)).draw().map_err(|err| e(&err))?;
        let pts = points.chunks_exact(2).map(|p| (p[0] as f64, p[1] as f64));
        chart.draw_series(pts.map(|p| Circle::new(p, 1, BLUE.mix(0.5).filled()))).map_err(|err| e(&err))?;
        // 3σ in pixels: the plot area is about 540 pixels across 2r.
        let px = ((3.0 * sigma as f64) / (2.0 * r) * 540.0).max(3.0) as i32;
        chart
            .draw_series(
                means.iter().map(|m| Circle::new((m[0] as f64, m[1] as f64), px, RED.stroke_width(1))),
            )
            .map_err(|err| e(&err))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_png_files_of_the_stated_size_with_ink_on_them() {
        let dir = tempfile::tempdir().unwrap();
        let curve: Vec<CurvePoint> = (0..20)
            .map(|i| CurvePoint { epoch: i as f64 / 4.0, d_loss: 1.4 - 0.01 * i as f64, g_loss: 0.7 })
            .collect();
        let p = dir.path().join("loss.png");
        loss_curve(&p, &curve, "test").unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), SIZE);
        let colored = |c: [u8; 3]| img.pixels().filter(|px| px.0 == c).count();
        assert!(colored([255, 0, 0]) > 100 && colored([0, 0, 255]) > 100, "both curves are drawn");
        let s = dir.path().join("scatter.png");
        scatter(&s, &[0.0, 0.0, 1.0, 1.0], &[[0.0, 0.0], [1.0, 0.0]], 0.05, "test").unwrap();
        let img = image::open(&s).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (600, 600));
        assert!(img.pixels().any(|px| px.0 == [255, 0, 0]), "the modes are drawn");
        assert!(!dir.path().read_dir().unwrap().any(|e| e
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "tmp")));
    }
}
