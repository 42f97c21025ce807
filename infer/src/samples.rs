//! Generator samples and the files they are written to: a PNG grid for images, CSV or NumPy
//! `.npy` for anything. Files are written atomically; CSV and `.npy` are written a chunk of
//! samples at a time ([`SampleWriter`]), so memory stays flat however many samples are drawn.

use std::io::Write;
use std::path::Path;

use crate::fsx::AtomicFile;
use crate::ndarray::{ArrayD, ArrayViewD, IxDyn};

use crate::error::{Error, Result};

/// The widest and tallest a PNG grid may be, in pixels (48 MB of RGB while it is drawn): more
/// samples than fit are an error that says to write `.npy` or `.csv`.
pub const MAX_GRID_SIDE: usize = 4096;

/// Samples of one shape: `data` is `[n, …sample shape]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Samples {
    pub data: ArrayD<f32>,
}

impl Samples {
    /// Samples from an array `[n, …sample shape]`.
    pub fn new(data: ArrayD<f32>) -> Self {
        Samples { data }
    }

    /// `n` samples of shape `shape` from row-major values.
    pub fn from_flat(shape: Vec<usize>, n: usize, values: Vec<f32>) -> Result<Self> {
        let dims: Vec<usize> = std::iter::once(n).chain(shape).collect();
        let data = ArrayD::from_shape_vec(IxDyn(&dims), values)
            .map_err(|e| Error::Input(format!("values do not make samples of shape {dims:?}: {e}")))?;
        Ok(Samples { data })
    }

    /// How many samples.
    pub fn len(&self) -> usize {
        self.data.shape().first().copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shape of one sample: `[2]` for points, `[C, H, W]` for images.
    pub fn sample_shape(&self) -> &[usize] {
        &self.data.shape()[1..]
    }

    /// Whether the samples are images PNG can show: `[1 or 3, H, W]`.
    pub fn is_image(&self) -> bool {
        is_image(self.sample_shape())
    }

    /// CSV: one sample per line, a header naming the columns (`x,y` for 2-D points).
    pub fn to_csv(&self) -> String {
        String::from_utf8(self.encode(Format::Csv, [0.0, 1.0], None).unwrap_or_default()).unwrap_or_default()
    }

    /// NumPy's `.npy` format 1.0: little-endian float32, shape `(n, …sample shape)`.
    pub fn to_npy(&self) -> Vec<u8> {
        self.encode(Format::Npy, [0.0, 1.0], None).unwrap_or_default()
    }

    /// A PNG grid of image samples, `columns` wide (default: about square), 2-pixel gutters;
    /// values in `range` map to 0–255 (clamped).
    pub fn to_png_grid(&self, range: [f32; 2], columns: Option<usize>) -> Result<Vec<u8>> {
        self.encode(Format::Png, range, columns)
    }

    fn encode(&self, format: Format, range: [f32; 2], columns: Option<usize>) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        let mut w = SampleWriter::new(
            Sink::Stream(&mut bytes),
            format,
            self.sample_shape(),
            self.len(),
            range,
            columns,
        )?;
        w.push(self.data.view())?;
        w.finish()?;
        Ok(bytes)
    }

    /// Writes the samples in the format the extension names (`.png`, `.csv`, `.npy`).
    pub fn write(&self, path: &Path, range: [f32; 2], columns: Option<usize>) -> Result<()> {
        let mut w = SampleWriter::create(path, self.sample_shape(), self.len(), range, columns)?;
        w.push(self.data.view())?;
        w.finish()
    }
}

/// Whether samples of this shape are images PNG can show: `[1 or 3, H, W]`.
pub fn is_image(sample_shape: &[usize]) -> bool {
    matches!(sample_shape, [1 | 3, _, _])
}

/// The formats samples are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Csv,
    Npy,
}

impl Format {
    /// The format a file's extension names.
    pub fn of(path: &Path) -> Result<Self> {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("png") => Ok(Format::Png),
            Some("csv") => Ok(Format::Csv),
            Some("npy") => Ok(Format::Npy),
            _ => Err(Error::Output(format!("{}: the output must end in .png, .csv or .npy", path.display()))),
        }
    }
}

enum Sink<'a> {
    File(AtomicFile),
    Stream(&'a mut dyn Write),
}

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::File(f) => f.write(buf),
            Sink::Stream(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::File(f) => f.flush(),
            Sink::Stream(s) => s.flush(),
        }
    }
}

/// A PNG grid being drawn: `cols` images of `[c, h, w]` a row.
struct Grid {
    image: image::RgbImage,
    cols: usize,
    chw: [usize; 3],
    range: [f32; 2],
}

const GAP: usize = 2;

/// Writes `n` samples of one shape a chunk at a time ([`SampleWriter::push`]) to a file (written
/// under a temporary name, renamed into place by [`SampleWriter::finish`]; dropped unfinished,
/// it leaves no file) or, as CSV, to a stream. The format's header is written first, so `n` is
/// given up front; a PNG grid is refused at once if it would exceed [`MAX_GRID_SIDE`].
pub struct SampleWriter<'a> {
    sink: Sink<'a>,
    name: String,
    format: Format,
    shape: Vec<usize>,
    n: usize,
    written: usize,
    grid: Option<Grid>,
}

impl<'a> SampleWriter<'a> {
    /// A writer to `path`, in the format its extension names.
    pub fn create(
        path: &Path,
        sample_shape: &[usize],
        n: usize,
        range: [f32; 2],
        columns: Option<usize>,
    ) -> Result<Self> {
        let format = Format::of(path)?;
        let name = path.display().to_string();
        // The grid is checked before the file is created.
        let grid = Self::grid(format, sample_shape, n, range, columns)?;
        let file = AtomicFile::create(path).map_err(|source| Error::Write { path: name.clone(), source })?;
        let mut w = SampleWriter {
            sink: Sink::File(file),
            name,
            format,
            shape: sample_shape.to_vec(),
            n,
            written: 0,
            grid,
        };
        w.header()?;
        Ok(w)
    }

    /// A writer of CSV to `out` (standard output, say).
    pub fn csv_to(out: &'a mut dyn Write, sample_shape: &[usize], n: usize) -> Result<Self> {
        Self::new(Sink::Stream(out), Format::Csv, sample_shape, n, [0.0, 1.0], None)
    }

    fn new(
        sink: Sink<'a>,
        format: Format,
        sample_shape: &[usize],
        n: usize,
        range: [f32; 2],
        columns: Option<usize>,
    ) -> Result<Self> {
        let grid = Self::grid(format, sample_shape, n, range, columns)?;
        let name = "the output".to_string();
        let mut w = SampleWriter { sink, name, format, shape: sample_shape.to_vec(), n, written: 0, grid };
        w.header()?;
        Ok(w)
    }

    fn grid(
        format: Format,
        shape: &[usize],
        n: usize,
        range: [f32; 2],
        columns: Option<usize>,
    ) -> Result<Option<Grid>> {
        if format != Format::Png {
            return Ok(None);
        }
        let &[c @ (1 | 3), h, w] = shape else {
            return Err(Error::Output(format!(
                "samples of shape {shape:?} are not images: write .csv or .npy instead"
            )));
        };
        let cols = columns.unwrap_or_else(|| (n as f64).sqrt().ceil() as usize).clamp(1, n.max(1));
        let rows = n.div_ceil(cols);
        let side =
            |count: usize, size: usize| count.saturating_mul(size.saturating_add(GAP)).saturating_add(GAP);
        let (gw, gh) = (side(cols, w), side(rows, h));
        if gw > MAX_GRID_SIDE || gh > MAX_GRID_SIDE {
            return Err(Error::Output(format!(
                "a PNG grid of {n} images of {w}×{h} in {cols} columns would be {gw}×{gh} pixels, more \
                 than the {MAX_GRID_SIDE}×{MAX_GRID_SIDE} a grid may be: write .npy or .csv, draw fewer \
                 samples or choose other columns"
            )));
        }
        let image = image::RgbImage::from_pixel(gw as u32, gh as u32, image::Rgb([40, 40, 40]));
        Ok(Some(Grid { image, cols, chw: [c, h, w], range }))
    }

    fn io(&self, source: std::io::Error) -> Error {
        Error::Write { path: self.name.clone(), source }
    }

    fn width(&self) -> usize {
        self.shape.iter().product()
    }

    fn header(&mut self) -> Result<()> {
        let header = match self.format {
            Format::Png => return Ok(()),
            Format::Csv => {
                let width = self.width();
                let names: Vec<String> = if width == 2 {
                    vec!["x".into(), "y".into()]
                } else {
                    (0..width).map(|i| format!("v{i}")).collect()
                };
                (names.join(",") + "\n").into_bytes()
            }
            Format::Npy => npy_header(self.n, &self.shape),
        };
        self.sink.write_all(&header).map_err(|e| self.io(e))
    }

    /// Writes the next samples, `[rows, …sample shape]`.
    pub fn push(&mut self, chunk: ArrayViewD<f32>) -> Result<()> {
        let rows = chunk.shape().first().copied().unwrap_or(0);
        if chunk.shape()[1.min(chunk.ndim())..] != self.shape[..] || self.written + rows > self.n {
            return Err(Error::Output(format!(
                "{} samples of shape {:?} do not continue {} of {} samples of shape {:?}",
                rows,
                chunk.shape().get(1..).unwrap_or(&[]),
                self.written,
                self.n,
                self.shape
            )));
        }
        let values: Vec<f32> = chunk.iter().copied().collect();
        let width = self.width().max(1);
        match (self.format, self.grid.as_mut()) {
            (Format::Png, Some(grid)) => {
                for (i, sample) in values.chunks(width).enumerate() {
                    grid.draw(self.written + i, sample);
                }
            }
            (Format::Csv, _) => {
                let mut text = String::new();
                for row in values.chunks(width) {
                    let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
                    text.push_str(&cells.join(","));
                    text.push('\n');
                }
                self.sink.write_all(text.as_bytes()).map_err(|e| self.io(e))?;
            }
            _ => {
                let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                self.sink.write_all(&bytes).map_err(|e| self.io(e))?;
            }
        }
        self.written += rows;
        Ok(())
    }

    /// Ends the output: a PNG is encoded, a file renamed into place. Fewer samples than announced
    /// are an error, and leave no file.
    pub fn finish(mut self) -> Result<()> {
        if self.written != self.n {
            return Err(Error::Output(format!("{} of {} samples were written", self.written, self.n)));
        }
        if let Some(grid) = self.grid.take() {
            let mut png = Vec::new();
            grid.image
                .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .map_err(|e| Error::Output(e.to_string()))?;
            self.sink.write_all(&png).map_err(|e| self.io(e))?;
        }
        let name = self.name.clone();
        let io = |source| Error::Write { path: name.clone(), source };
        match self.sink {
            Sink::File(f) => f.commit().map_err(io),
            Sink::Stream(s) => s.flush().map_err(io),
        }
    }
}

impl Grid {
    fn draw(&mut self, i: usize, sample: &[f32]) {
        let [c, h, w] = self.chw;
        let (x0, y0) = (GAP + (i % self.cols) * (w + GAP), GAP + (i / self.cols) * (h + GAP));
        let span = (self.range[1] - self.range[0]).max(f32::MIN_POSITIVE);
        let to_u8 = |v: f32| (((v - self.range[0]) / span).clamp(0.0, 1.0) * 255.0).round() as u8;
        for y in 0..h {
            for x in 0..w {
                let px = |ch: usize| to_u8(sample[(ch * h + y) * w + x]);
                let rgb = if c == 1 { [px(0); 3] } else { [px(0), px(1), px(2)] };
                self.image.put_pixel((x0 + x) as u32, (y0 + y) as u32, image::Rgb(rgb));
            }
        }
    }
}

/// NumPy's `.npy` format 1.0 header for little-endian float32 of shape `(n, …sample shape)`.
fn npy_header(n: usize, sample_shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> =
        std::iter::once(n).chain(sample_shape.iter().copied()).map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64,
    // ending in a newline.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points() -> Samples {
        Samples::from_flat(vec![2], 3, vec![0.5, -1.0, 2.0, 0.25, 0.0, 1.5]).unwrap()
    }

    #[test]
    fn csv_has_a_header_and_one_line_per_sample() {
        assert_eq!(points().to_csv(), "x,y\n0.5,-1\n2,0.25\n0,1.5\n");
    }

    #[test]
    fn npy_header_is_aligned_and_data_follows() {
        let b = points().to_npy();
        assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
        let len = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + len) % 64, 0);
        let header = std::str::from_utf8(&b[10..10 + len]).unwrap();
        assert!(header.contains("'shape': (3, 2)") && header.ends_with('\n'), "{header}");
        assert_eq!(b.len(), 10 + len + 6 * 4);
        assert_eq!(f32::from_le_bytes(b[10 + len..14 + len].try_into().unwrap()), 0.5);
    }

    #[test]
    fn png_grid_places_and_scales_pixels() {
        // Two 1×2×2 images: the first all -1 (black), the second all 1 (white).
        let s = Samples::from_flat(vec![1, 2, 2], 2, vec![-1., -1., -1., -1., 1., 1., 1., 1.]).unwrap();
        let png = s.to_png_grid([-1.0, 1.0], Some(2)).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (2 * 4 + 2, 4 + 2));
        assert_eq!(img.get_pixel(2, 2).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(6, 3).0, [255, 255, 255]);
        assert!(points().to_png_grid([-1.0, 1.0], None).is_err());
    }
}
