//! Generator samples and the files they are written to: a PNG grid for images, CSV or NumPy
//! `.npy` for anything. Files are written atomically.

use std::path::Path;

use crate::ndarray::{ArrayD, IxDyn};

use crate::error::{Error, Result};

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
        matches!(self.sample_shape(), [1 | 3, _, _])
    }

    /// The values, row-major.
    fn values(&self) -> impl Iterator<Item = f32> + '_ {
        self.data.iter().copied()
    }

    /// CSV: one sample per line, a header naming the columns (`x,y` for 2-D points).
    pub fn to_csv(&self) -> String {
        let width = self.sample_shape().iter().product::<usize>();
        let header: Vec<String> = if width == 2 {
            vec!["x".into(), "y".into()]
        } else {
            (0..width).map(|i| format!("v{i}")).collect()
        };
        let mut out = header.join(",") + "\n";
        let values: Vec<f32> = self.values().collect();
        for row in values.chunks(width.max(1)) {
            let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        out
    }

    /// NumPy's `.npy` format 1.0: little-endian float32, shape `(n, …sample shape)`.
    pub fn to_npy(&self) -> Vec<u8> {
        let dims: Vec<String> = self.data.shape().iter().map(|d| d.to_string()).collect();
        let shape =
            if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
        let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        // Magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64,
        // ending in a newline.
        let unpadded = 10 + header.len() + 1;
        header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend(self.values().flat_map(|v| v.to_le_bytes()));
        out
    }

    /// A PNG grid of image samples, `columns` wide (default: about square), 2-pixel gutters;
    /// values in `range` map to 0–255 (clamped).
    pub fn to_png_grid(&self, range: [f32; 2], columns: Option<usize>) -> Result<Vec<u8>> {
        let [c, h, w] = match self.sample_shape() {
            &[c @ (1 | 3), h, w] => [c, h, w],
            other => {
                return Err(Error::Output(format!(
                    "samples of shape {other:?} are not images: write .csv or .npy instead"
                )))
            }
        };
        let n = self.len();
        let cols = columns.unwrap_or_else(|| (n as f64).sqrt().ceil() as usize).clamp(1, n.max(1));
        let rows = n.div_ceil(cols);
        let gap = 2;
        let (gw, gh) = (cols * (w + gap) + gap, rows * (h + gap) + gap);
        let mut img = image::RgbImage::from_pixel(gw as u32, gh as u32, image::Rgb([40, 40, 40]));
        let span = (range[1] - range[0]).max(f32::MIN_POSITIVE);
        let to_u8 = |v: f32| (((v - range[0]) / span).clamp(0.0, 1.0) * 255.0).round() as u8;
        let values: Vec<f32> = self.values().collect();
        for (i, sample) in values.chunks(c * h * w).enumerate() {
            let (x0, y0) = (gap + (i % cols) * (w + gap), gap + (i / cols) * (h + gap));
            for y in 0..h {
                for x in 0..w {
                    let px = |ch: usize| to_u8(sample[(ch * h + y) * w + x]);
                    let rgb = if c == 1 { [px(0); 3] } else { [px(0), px(1), px(2)] };
                    img.put_pixel((x0 + x) as u32, (y0 + y) as u32, image::Rgb(rgb));
                }
            }
        }
        let mut bytes = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
            .map_err(|e| Error::Output(e.to_string()))?;
        Ok(bytes)
    }

    /// Writes the samples in the format the extension names (`.png`, `.csv`, `.npy`).
    pub fn write(&self, path: &Path, range: [f32; 2], columns: Option<usize>) -> Result<()> {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        let bytes = match ext.as_deref() {
            Some("png") => self.to_png_grid(range, columns)?,
            Some("csv") => self.to_csv().into_bytes(),
            Some("npy") => self.to_npy(),
            _ => {
                return Err(Error::Output(format!(
                    "{}: the output must end in .png, .csv or .npy",
                    path.display()
                )))
            }
        };
        crate::fsx::write_atomic(path, &bytes)
            .map_err(|source| Error::Write { path: path.display().to_string(), source })
    }
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
