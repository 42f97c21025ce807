//! Image data sets for GAN training and evaluation: Fashion-MNIST as Debian installs it, any
//! folder of MNIST-format IDX files (gzipped or not), and folders of PNG/JPEG pictures.
//!
//! Images come out as one float tensor `[N, C, H, W]` scaled to [−1, 1] (a Tanh generator's
//! range), labels (when the data set has them) as `[N]` int64.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use tch::{Kind, Tensor};

/// Where the Debian package `dataset-fashion-mnist` puts the IDX files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Fashion-MNIST's ten classes, in label order.
pub const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Which half of an IDX data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`.
    Train,
    /// `t10k-images-idx3-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]`.
    Test,
}

impl Split {
    fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// A set of images, `[N, C, H, W]` in [−1, 1], with labels when the data set has them.
#[derive(Debug)]
pub struct ImageSet {
    pub images: Tensor,
    pub labels: Option<Tensor>,
    /// Files (image folders) that could not be read and were left out.
    pub skipped: usize,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.images.size()[0] as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `[C, H, W]`.
    pub fn sample_shape(&self) -> Vec<usize> {
        self.images.size()[1..].iter().map(|&d| d as usize).collect()
    }
}

/// An IDX array: dimensions and unsigned bytes (the only element type MNIST-format files use).
#[derive(Debug, Clone, PartialEq)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// The most data bytes an IDX file may declare: 60,000 images of 28×28 are 47 MB; this is 40
/// times that, and about a tenth of this machine class's memory once the images become floats.
pub const MAX_IDX_BYTES: usize = 2_000_000_000;

/// Parses IDX bytes (gzip-compressed or not, told apart by the gzip magic number). The header is
/// checked before anything is allocated for the data, and a compressed file is expanded no
/// further than its header says (so a small gzip file cannot expand to gigabytes first).
pub fn parse_idx(bytes: &[u8]) -> anyhow::Result<Idx> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        read_idx(flate2::read::GzDecoder::new(bytes), None)
    } else {
        read_idx(bytes, Some(bytes.len()))
    }
}

/// Reads an IDX array from `r`, whose length is `len` when known.
fn read_idx(mut r: impl std::io::Read, len: Option<usize>) -> anyhow::Result<Idx> {
    // Errors other than an early end come from the gzip decoder.
    let bad_gzip = |e: std::io::Error| anyhow::anyhow!("bad gzip data: {e}");
    let mut magic = [0u8; 4];
    let not_idx = "not an IDX file (it must start with two zero bytes)";
    match r.read_exact(&mut magic) {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => bail!(not_idx),
        other => other.map_err(bad_gzip)?,
    }
    if magic[0] != 0 || magic[1] != 0 {
        bail!(not_idx);
    }
    if magic[2] != 0x08 {
        bail!("IDX element type 0x{:02x} is not supported (only unsigned bytes, 0x08)", magic[2]);
    }
    let ndims = magic[3] as usize;
    let mut header = vec![0u8; 4 * ndims];
    match r.read_exact(&mut header) {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => bail!("the IDX header is cut short"),
        other => other.map_err(bad_gzip)?,
    }
    let dims: Vec<usize> =
        header.chunks_exact(4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize).collect();
    let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| n <= MAX_IDX_BYTES);
    let Some(n) = n else {
        bail!("the header says {dims:?}: more than the {MAX_IDX_BYTES} bytes an IDX file may hold");
    };
    if let Some(len) = len {
        let follow = len - 4 - 4 * ndims;
        if follow != n {
            bail!("the header says {dims:?} ({n} bytes) but {follow} bytes follow it");
        }
    }
    // One byte more than declared, to tell a longer file from an exact one.
    let mut data = Vec::with_capacity(n.min(1 << 26));
    r.take(n as u64 + 1).read_to_end(&mut data).map_err(bad_gzip)?;
    if data.len() != n {
        let more = if data.len() > n { "more".to_string() } else { data.len().to_string() };
        bail!("the header says {dims:?} ({n} bytes) but {more} bytes follow it");
    }
    Ok(Idx { dims, data })
}

fn find_idx(dir: &Path, name: &str) -> Option<PathBuf> {
    [name.to_string(), format!("{name}.gz")].into_iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// Reads `{train|t10k}-images-idx3-ubyte[.gz]` (and the labels next to it, if there) from `dir`.
pub fn load_idx_dir(dir: &Path, split: Split) -> anyhow::Result<ImageSet> {
    let images_name = format!("{}-images-idx3-ubyte", split.prefix());
    let images_path = find_idx(dir, &images_name)
        .with_context(|| format!("{}: no {images_name} or {images_name}.gz in this folder", dir.display()))?;
    let read = |p: &Path| -> anyhow::Result<Idx> {
        // The largest IDX file: the data's cap, four bytes of magic and at most 255 dimensions.
        let max = MAX_IDX_BYTES as u64 + 4 + 4 * 255;
        let bytes =
            kiln_infer::fsx::read_bounded(p, max).with_context(|| format!("cannot read {}", p.display()))?;
        parse_idx(&bytes).with_context(|| format!("{}", p.display()))
    };
    let idx = read(&images_path)?;
    let [n, h, w] = idx.dims[..] else {
        bail!(
            "{}: expected 3 dimensions (count, rows, columns), found {:?}",
            images_path.display(),
            idx.dims
        );
    };
    if n == 0 {
        bail!("{}: the file holds no images", images_path.display());
    }
    let images = Tensor::from_slice(&idx.data).to_kind(Kind::Float).view([n as i64, 1, h as i64, w as i64])
        / 127.5
        - 1.0;
    let labels_name = format!("{}-labels-idx1-ubyte", split.prefix());
    let labels = match find_idx(dir, &labels_name) {
        None => None,
        Some(p) => {
            let l = read(&p)?;
            if l.dims != [n] {
                bail!("{}: {:?} labels for {n} images", p.display(), l.dims);
            }
            Some(Tensor::from_slice(&l.data).to_kind(Kind::Int64))
        }
    };
    Ok(ImageSet { images, labels, skipped: 0 })
}

/// Fashion-MNIST from [`FASHION_MNIST_DIR`], with a message saying how to get it when absent.
pub fn load_fashion_mnist(split: Split) -> anyhow::Result<ImageSet> {
    let dir = Path::new(FASHION_MNIST_DIR);
    if !dir.is_dir() {
        bail!(
            "Fashion-MNIST is not installed ({FASHION_MNIST_DIR} is missing): install the Debian \
             package with `apt-get install dataset-fashion-mnist`, or download the four IDX files \
             and pass --data idx:FOLDER"
        );
    }
    load_idx_dir(dir, split)
}

/// How pictures from a folder are turned into training images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FolderOptions {
    /// Side of the square images (centre-cropped, then resized).
    pub size: u32,
    /// 1 (grayscale) or 3 (RGB).
    pub channels: u32,
}

/// Every readable picture (PNG or JPEG) under `dir`, recursively, in path order. Files that cannot
/// be decoded are skipped and counted; a folder with no readable picture is an error.
pub fn load_image_folder(dir: &Path, opts: FolderOptions) -> anyhow::Result<ImageSet> {
    if !dir.is_dir() {
        bail!("{}: not a folder", dir.display());
    }
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))? {
            let entry = entry.with_context(|| format!("cannot list {}", d.display()))?;
            let path = entry.path();
            let hidden = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            let kind = entry.file_type().with_context(|| format!("cannot read {}", path.display()))?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_symlink() && path.is_dir() {
                // A link to a folder is not followed: one to a folder above it would loop.
                continue;
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    let (s, c) = (opts.size, opts.channels);
    fits_in_memory(dir, files.len(), opts, crate::run::available_memory())?;
    let mut data: Vec<u8> = Vec::new();
    let mut skipped = 0;
    for path in &files {
        let picture = std::fs::File::open(path)
            .map_err(image::ImageError::IoError)
            .and_then(|f| decode_picture(std::io::BufReader::new(f), s, c));
        match picture {
            Ok(pixels) => data.extend(pixels),
            Err(_) => skipped += 1,
        }
    }
    let n = data.len() / (c * s * s) as usize;
    if n == 0 {
        bail!(
            "{}: no readable PNG or JPEG pictures ({} files, {skipped} could not be read)",
            dir.display(),
            files.len()
        );
    }
    let images =
        Tensor::from_slice(&data).to_kind(Kind::Float).view([n as i64, c as i64, s as i64, s as i64]) / 127.5
            - 1.0;
    Ok(ImageSet { images, labels: None, skipped })
}

/// Decodes one picture (PNG or JPEG, told by its content), crops its centre square and scales it
/// to `size` × `size` with `channels` (1: grey, 3: RGB) channels; returns the bytes channel by
/// channel (CHW). The decoder's default limits bound what a picture's header can make it
/// allocate.
pub fn decode_picture(
    reader: impl std::io::BufRead + std::io::Seek,
    size: u32,
    channels: u32,
) -> image::ImageResult<Vec<u8>> {
    let img = image::ImageReader::new(reader).with_guessed_format()?.decode()?;
    let side = img.width().min(img.height());
    let img = img.crop_imm((img.width() - side) / 2, (img.height() - side) / 2, side, side).resize_exact(
        size,
        size,
        image::imageops::FilterType::Triangle,
    );
    let pixels = if channels == 1 { img.to_luma8().into_raw() } else { img.to_rgb8().into_raw() };
    // HWC → CHW.
    let (plane, c) = ((size * size) as usize, channels as usize);
    Ok((0..c).flat_map(|ch| (0..plane).map(move |i| (i, ch))).map(|(i, ch)| pixels[i * c + ch]).collect())
}

/// Refuses `files` pictures from `dir` that could not all be held in `available` bytes: each
/// becomes c × s × s bytes, then as many f32 three times over (the tensor and its rescaling's
/// temporaries). Checked before any is decoded.
fn fits_in_memory(
    dir: &Path,
    files: usize,
    opts: FolderOptions,
    available: Option<u64>,
) -> anyhow::Result<()> {
    let (s, c) = (opts.size as u128, opts.channels as u128);
    let need = (files as u128).saturating_mul(c * s * s).saturating_mul(13);
    match available {
        Some(available) if need > available as u128 => bail!(
            "{}: {files} files as {c}×{s}×{s} images would take up to {:.1} GB of memory, more than \
             the {:.1} GB available: use a smaller --image-size or fewer pictures",
            dir.display(),
            need as f64 / 1e9,
            available as f64 / 1e9
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        b.extend(dims.iter().flat_map(|d| d.to_be_bytes()));
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn idx_plain_and_gzipped_read_the_same() {
        let raw = idx_bytes(&[2, 1, 3], &[0, 1, 2, 3, 4, 255]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        let gz = gz.finish().unwrap();
        let want = Idx { dims: vec![2, 1, 3], data: vec![0, 1, 2, 3, 4, 255] };
        assert_eq!(parse_idx(&raw).unwrap(), want);
        assert_eq!(parse_idx(&gz).unwrap(), want);
    }

    #[test]
    fn idx_errors_say_what_is_wrong() {
        let short = idx_bytes(&[2, 2], &[1, 2, 3]);
        assert!(parse_idx(&short).unwrap_err().to_string().contains("3 bytes follow"));
        assert!(parse_idx(b"PNG....").unwrap_err().to_string().contains("not an IDX file"));
        assert!(parse_idx(&[0, 0]).unwrap_err().to_string().contains("not an IDX file"));
        let mut float = idx_bytes(&[1], &[0, 0, 0, 0]);
        float[2] = 0x0d;
        assert!(parse_idx(&float).unwrap_err().to_string().contains("0x0d"));
        // A header declaring 2^31 × 2^31 images is refused before anything is allocated.
        let huge = idx_bytes(&[1 << 31, 1 << 31, 1], &[1, 2, 3]);
        assert!(parse_idx(&huge).unwrap_err().to_string().contains("more than the 2000000000 bytes"));
    }

    #[test]
    fn a_gzip_bomb_is_expanded_no_further_than_its_header_says() {
        // 300 MB of zeros after a header declaring 4 bytes: reading stops at the fifth (the
        // message says "more" without counting them).
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &idx_bytes(&[2, 2], &[])).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..300 {
            std::io::Write::write_all(&mut gz, &zeros).unwrap();
        }
        let gz = gz.finish().unwrap();
        assert!(gz.len() < 1_000_000, "{} bytes compressed", gz.len());
        let e = parse_idx(&gz).unwrap_err().to_string();
        assert!(e.contains("(4 bytes) but more bytes follow it"), "{e}");
    }

    #[test]
    fn idx_folder_scales_pixels_and_reads_labels() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), idx_bytes(&[2, 1, 2], &[0, 255, 51, 204]))
            .unwrap();
        std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), idx_bytes(&[2], &[7, 3])).unwrap();
        let set = load_idx_dir(dir.path(), Split::Test).unwrap();
        assert_eq!(set.images.size(), [2, 1, 1, 2]);
        let px: Vec<f32> = Vec::try_from(set.images.view(-1)).unwrap();
        let want = [-1.0, 1.0, 51.0 / 127.5 - 1.0, 204.0 / 127.5 - 1.0];
        assert!(px.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{px:?}");
        assert_eq!(Vec::<i64>::try_from(set.labels.unwrap()).unwrap(), [7, 3]);
        let err = load_idx_dir(dir.path(), Split::Train).unwrap_err().to_string();
        assert!(err.contains("train-images-idx3-ubyte"), "{err}");
    }

    #[test]
    fn image_folder_crops_resizes_and_counts_unreadable_files() {
        let dir = tempfile::tempdir().unwrap();
        // A 6×4 picture: left half red, right half blue; the centre crop keeps columns 1..5.
        let img = image::RgbImage::from_fn(6, 4, |x, _| {
            if x < 3 {
                image::Rgb([255, 0, 0])
            } else {
                image::Rgb([0, 0, 255])
            }
        });
        img.save(dir.path().join("a.png")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        image::GrayImage::from_pixel(3, 3, image::Luma([255])).save(dir.path().join("sub/b.png")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a picture").unwrap();
        std::fs::write(dir.path().join("broken.png"), b"\x89PNG garbage").unwrap();
        // A link back up the tree is neither followed nor counted.
        std::os::unix::fs::symlink(dir.path(), dir.path().join("sub/up")).unwrap();
        let set = load_image_folder(dir.path(), FolderOptions { size: 2, channels: 3 }).unwrap();
        assert_eq!((set.len(), set.skipped), (2, 2));
        assert_eq!(set.sample_shape(), [3, 2, 2]);
        let a: Vec<f32> = Vec::try_from(set.images.get(0).view(-1)).unwrap();
        // Red channel: left column mostly red, right column mostly not; blue the opposite (the
        // resize filter blends neighbours, so not ±1 exactly).
        let sign = |v: &[f32]| {
            v.iter()
                .map(|&x| {
                    if x > 0.5 {
                        1
                    } else if x < -0.5 {
                        -1
                    } else {
                        0
                    }
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(sign(&a[0..4]), [1, -1, 1, -1], "{a:?}");
        assert_eq!(sign(&a[8..12]), [-1, 1, -1, 1], "{a:?}");
        assert_eq!(sign(&a[4..8]), [-1, -1, -1, -1], "no green: {a:?}");
        let gray = load_image_folder(dir.path(), FolderOptions { size: 2, channels: 1 }).unwrap();
        assert_eq!(gray.sample_shape(), [1, 2, 2]);
        let empty = tempfile::tempdir().unwrap();
        std::fs::write(empty.path().join("x.jpg"), b"nope").unwrap();
        let err = load_image_folder(empty.path(), FolderOptions { size: 8, channels: 1 }).unwrap_err();
        assert!(err.to_string().contains("1 could not be read"), "{err}");
    }

    #[test]
    fn a_folder_of_more_pictures_than_memory_holds_is_refused_before_decoding() {
        let opts = FolderOptions { size: 64, channels: 3 };
        let dir = Path::new("pics");
        // 64 × 64 × 3 bytes, and 12 more a byte as f32: 159,744 bytes a picture.
        assert!(fits_in_memory(dir, 1000, opts, Some(159_744_000)).is_ok());
        let err = fits_in_memory(dir, 1001, opts, Some(159_744_000)).unwrap_err().to_string();
        assert!(err.contains("1001 files as 3×64×64 images") && err.contains("--image-size"), "{err}");
        assert!(fits_in_memory(dir, usize::MAX, opts, None).is_ok(), "no reading of memory: no refusal");
    }
}
