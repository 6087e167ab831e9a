//! Image classification data: readers for the on-disk formats, an in-memory [`Dataset`],
//! a deterministic validation split, host-side augmentation and batching into tensors.
//!
//! Everything is held in memory as `f32` in `[0, 1]` because the supported data sets are
//! small (at most 60 000 images) and attacks are defined in that pixel space.

pub mod augment;
pub mod cifar;
pub mod corrupt;
pub mod folder;
pub mod idx;
pub mod npy;
pub mod synthetic;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use burn::prelude::{Device, Int, Tensor, TensorData};

pub use crate::error::DataError;
use crate::rng::AdvRng;

pub use augment::Augment;

/// The path reported for data that did not come from a file.
pub const MEMORY_PATH: &str = "<memory>";

/// Stream of [`crate::rng::derived`] used by [`Dataset::split_validation`], so that the split
/// depends on the seed only and not on how much randomness the run used before.
const SPLIT_STREAM: u64 = 0x5917_0001;

/// Both on-disk formats hold 10-class data sets.
const FORMAT_CLASSES: usize = 10;

/// Class names for a 10-class file format: the given ones, or indices if none are given.
fn ten_class_names(dir: &Path, names: Vec<String>) -> Result<Vec<String>, DataError> {
    match names.len() {
        0 => Ok((0..FORMAT_CLASSES).map(|c| c.to_string()).collect()),
        FORMAT_CLASSES => Ok(names),
        n => Err(DataError::invalid(
            dir,
            format!("{n} class names given for a {FORMAT_CLASSES}-class data set"),
        )),
    }
}

/// An in-memory image classification data set. Pixels are f32 in [0,1], layout N×C×H×W
/// (row-major).
///
/// `Debug` is written by hand to print a summary: the derived one would dump every pixel
/// (tens of millions of numbers) into logs and panic messages.
#[derive(Clone)]
pub struct Dataset {
    /// Every pixel, example after example, each image C×H×W row-major; values in `[0, 1]`
    /// and `len() * image_len()` of them ([`Dataset::new`] checks both).
    pub images: Vec<f32>,
    /// One class index per example, each `< num_classes`.
    pub labels: Vec<u8>,
    /// Colour channels per image (1 for the MNISTs, 3 for CIFAR-10).
    pub channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Number of classes, in `1..=256` (labels are bytes).
    pub num_classes: usize,
    /// One display name per class, indexed by label; the class indices as text for unnamed
    /// data, so there are always `num_classes` of them.
    pub class_names: Vec<String>,
}

impl Dataset {
    /// Build a data set from raw parts, checking every invariant the rest of advtrain relies
    /// on (attacks clamp to `[0, 1]`, losses index by label), so bad synthetic or user data
    /// fails here rather than as a NaN or an index panic later. An empty `class_names` means
    /// "unnamed": the classes are then named by their index.
    pub fn new(
        images: Vec<f32>,
        labels: Vec<u8>,
        channels: usize,
        height: usize,
        width: usize,
        num_classes: usize,
        class_names: Vec<String>,
    ) -> Result<Self, DataError> {
        let path = PathBuf::from(MEMORY_PATH);
        if channels == 0 || height == 0 || width == 0 {
            return Err(DataError::invalid(
                path,
                format!("image shape {channels}x{height}x{width} has a zero dimension"),
            ));
        }
        if num_classes == 0 || num_classes > 256 {
            return Err(DataError::invalid(
                path,
                format!("number of classes must be in 1..=256, got {num_classes}"),
            ));
        }
        let class_names = if class_names.is_empty() {
            (0..num_classes).map(|c| c.to_string()).collect()
        } else if class_names.len() != num_classes {
            return Err(DataError::invalid(
                path,
                format!(
                    "{} class names given for {num_classes} classes",
                    class_names.len()
                ),
            ));
        } else {
            class_names
        };
        let image_len = channels * height * width;
        let expected = labels.len().checked_mul(image_len);
        if expected != Some(images.len()) {
            return Err(DataError::invalid(
                path,
                format!(
                    "{} pixel values do not make {} images of {channels}x{height}x{width}",
                    images.len(),
                    labels.len()
                ),
            ));
        }
        if let Some((index, &label)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| usize::from(l) >= num_classes)
        {
            return Err(DataError::BadLabel {
                path,
                index,
                label: label.into(),
                num_classes,
            });
        }
        if let Some((i, v)) = images
            .iter()
            .enumerate()
            .find(|(_, v)| !(0.0..=1.0).contains(*v))
        {
            return Err(DataError::invalid(
                path,
                format!(
                    "pixel {} of image {} is {v}, outside [0, 1]",
                    i % image_len,
                    i / image_len
                ),
            ));
        }
        Ok(Dataset {
            images,
            labels,
            channels,
            height,
            width,
            num_classes,
            class_names,
        })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the data set has no examples (an empty validation split, say).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// SHA-256 (hex) of the examples: their shape, labels and pixels. Records carry it so a
    /// reader can tell whether two evaluations (or a checkpoint and a resume) saw the same
    /// data; the same count of examples is not enough, since another file can have it too.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for dim in [
            self.len(),
            self.channels,
            self.height,
            self.width,
            self.num_classes,
        ] {
            hash.update((dim as u64).to_le_bytes());
        }
        hash.update(&self.labels);
        let mut bytes = Vec::with_capacity(4 * 4096);
        for chunk in self.images.chunks(4096) {
            bytes.clear();
            bytes.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
            hash.update(&bytes);
        }
        crate::io::hex(&hash.finalize())
    }

    /// Values per image: C*H*W.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The pixels of example `i` (C×H×W). Panics if `i >= len()`.
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// The examples at `indices`, in that order (repeats allowed). Panics on an index out of
    /// range, as slicing does: indices come from this data set, so that is a bug.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let n = self.image_len();
        let mut images = Vec::with_capacity(indices.len() * n);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        self.with_examples(images, labels)
    }

    /// The first `min(n, len)` examples (the CLI's `--limit`), so quick runs stay comparable
    /// with each other.
    pub fn take(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        self.with_examples(
            self.images[..n * self.image_len()].to_vec(),
            self.labels[..n].to_vec(),
        )
    }

    /// Deterministic held-out split, returned as `(train, val)`.
    ///
    /// The example indices are shuffled with a generator derived from `seed` alone, the first
    /// `n_val` go to validation and the rest to training; both parts then keep the original
    /// relative order, so the split is a pure function of `(data, n_val, seed)`.
    /// `n_val == 0` gives the whole set back as training data and an empty validation set;
    /// otherwise `n_val >= len` is an error, as it would leave nothing to train on.
    pub fn split_validation(
        &self,
        n_val: usize,
        seed: u64,
    ) -> Result<(Dataset, Dataset), DataError> {
        if n_val == 0 {
            return Ok((self.clone(), self.with_examples(Vec::new(), Vec::new())));
        }
        if n_val >= self.len() {
            return Err(DataError::invalid(
                MEMORY_PATH,
                format!(
                    "validation split of {n_val} examples leaves no training data (the data set has {})",
                    self.len()
                ),
            ));
        }
        let mut rng = crate::rng::derived(seed, SPLIT_STREAM);
        let order = crate::rng::permutation(&mut rng, self.len());
        let mut val: Vec<usize> = order[..n_val].to_vec();
        let mut train: Vec<usize> = order[n_val..].to_vec();
        val.sort_unstable();
        train.sort_unstable();
        Ok((self.subset(&train), self.subset(&val)))
    }

    /// Gather the given examples into tensors on `device`: images `[b, C, H, W]` f32, labels
    /// `[b]` Int.
    pub fn batch(&self, indices: &[usize], device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let n = self.image_len();
        let mut images = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        self.to_tensors(images, indices, device)
    }

    /// Same as [`Dataset::batch`], with `aug` applied to each image on the host first:
    /// augmentation is cheap per pixel and doing it before the upload keeps it backend-neutral.
    pub fn batch_augmented(
        &self,
        indices: &[usize],
        aug: &Augment,
        rng: &mut AdvRng,
        device: &Device,
    ) -> (Tensor<4>, Tensor<1, Int>) {
        if !aug.is_active() {
            return self.batch(indices, device);
        }
        let n = self.image_len();
        let mut images = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            let start = images.len();
            images.extend_from_slice(self.image(i));
            aug.apply(
                &mut images[start..],
                self.channels,
                self.height,
                self.width,
                rng,
            );
        }
        self.to_tensors(images, indices, device)
    }

    /// How many examples each class has (index = class).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for &l in &self.labels {
            counts[usize::from(l)] += 1;
        }
        counts
    }

    fn to_tensors(
        &self,
        images: Vec<f32>,
        indices: &[usize],
        device: &Device,
    ) -> (Tensor<4>, Tensor<1, Int>) {
        let b = indices.len();
        let labels: Vec<i64> = indices.iter().map(|&i| i64::from(self.labels[i])).collect();
        let x = Tensor::<4>::from_data(
            TensorData::new(images, [b, self.channels, self.height, self.width]),
            device,
        );
        let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [b]), device);
        (x, y)
    }

    /// A data set with this one's metadata and the given examples (already validated).
    fn with_examples(&self, images: Vec<f32>, labels: Vec<u8>) -> Dataset {
        Dataset {
            images,
            labels,
            channels: self.channels,
            height: self.height,
            width: self.width,
            num_classes: self.num_classes,
            class_names: self.class_names.clone(),
        }
    }
}

impl fmt::Debug for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dataset")
            .field("len", &self.len())
            .field("image_shape", &[self.channels, self.height, self.width])
            .field("num_classes", &self.num_classes)
            .field("class_names", &self.class_names)
            .field("class_counts", &self.class_counts())
            .finish_non_exhaustive()
    }
}

/// Split `order` into batches of `batch_size` (the last one may be smaller). Panics if
/// `batch_size` is 0.
pub fn batches(order: &[usize], batch_size: usize) -> std::slice::Chunks<'_, usize> {
    assert!(batch_size > 0, "batch size must be positive");
    order.chunks(batch_size)
}

/// Named data sets the CLI knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetName {
    /// Fashion-MNIST (Xiao et al., 2017): 28×28 greyscale clothing, IDX files.
    FashionMnist,
    /// MNIST handwritten digits: 28×28 greyscale, IDX files.
    Mnist,
    /// CIFAR-10: 32×32 RGB, the binary version's batch files.
    Cifar10,
    /// The user's NumPy arrays: `test.npz` / `train.npz` or `x_test.npy` + `y_test.npy`
    /// ([`npy::load_npy_split`]).
    Npy,
    /// The user's images, one sub-directory per class, resized and centre-cropped to the
    /// model's input ([`folder::load_image_folder`]).
    ImageFolder,
}

impl DatasetName {
    /// The user's formats, whose shape and classes come from the files.
    pub const FORMATS: [DatasetName; 2] = [DatasetName::Npy, DatasetName::ImageFolder];

    /// The named data sets (fixed shape and classes), in the order the CLI lists them.
    pub const ALL: [DatasetName; 3] = [
        DatasetName::FashionMnist,
        DatasetName::Mnist,
        DatasetName::Cifar10,
    ];

    /// Where the data set is found without `--data`: only Fashion-MNIST has a system package
    /// (Debian's `dataset-fashion-mnist`).
    pub fn default_dir(&self) -> Option<PathBuf> {
        match self {
            DatasetName::FashionMnist => Some(PathBuf::from("/usr/share/datasets/fashion-mnist")),
            _ => None,
        }
    }

    /// The official class names, in label order (empty for the user's formats: their names
    /// come with the data, see [`Dataset::class_names`]).
    pub fn class_names(&self) -> Vec<String> {
        let names: &[&str] = match self {
            DatasetName::FashionMnist => &[
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
            ],
            DatasetName::Mnist => &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
            DatasetName::Cifar10 => &[
                "airplane",
                "automobile",
                "bird",
                "cat",
                "deer",
                "dog",
                "frog",
                "horse",
                "ship",
                "truck",
            ],
            DatasetName::Npy | DatasetName::ImageFolder => &[],
        };
        names.iter().map(|s| s.to_string()).collect()
    }

    /// Image shape `(channels, height, width)` of a named data set, known before loading so
    /// models can be built first; `None` for the user's formats.
    pub fn image_shape(&self) -> Option<(usize, usize, usize)> {
        match self {
            DatasetName::FashionMnist | DatasetName::Mnist => Some((1, 28, 28)),
            DatasetName::Cifar10 => Some((3, 32, 32)),
            DatasetName::Npy | DatasetName::ImageFolder => None,
        }
    }

    /// Number of classes: 10 for every named data set; `None` for the user's formats.
    pub fn num_classes(&self) -> Option<usize> {
        self.image_shape().map(|_| 10)
    }

    /// The name as used by `--dataset` and in records.
    pub fn as_str(&self) -> &'static str {
        match self {
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Mnist => "mnist",
            DatasetName::Cifar10 => "cifar10",
            DatasetName::Npy => "npy",
            DatasetName::ImageFolder => "image-folder",
        }
    }

    /// What to tell a user whose data directory does not exist.
    pub fn missing_hint(&self) -> String {
        match self {
            DatasetName::FashionMnist => {
                "install it with: sudo apt-get install -y dataset-fashion-mnist, or pass --data DIR"
                    .to_string()
            }
            DatasetName::Mnist => format!(
                "MNIST has no system package: put {} (optionally .gz) in a directory and pass --data DIR",
                idx::file_names_list()
            ),
            DatasetName::Cifar10 => "download the CIFAR-10 binary version (cifar-10-binary.tar.gz), \
                 extract it and pass --data DIR"
                .to_string(),
            DatasetName::Npy => {
                "pass --data DIR holding test.npz (arrays x, y) or x_test.npy and y_test.npy"
                    .to_string()
            }
            DatasetName::ImageFolder => {
                "pass --data DIR holding one sub-directory of images per class (or train/ and \
                 test/ each holding them)"
                    .to_string()
            }
        }
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown data set name; its message lists the valid ones.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown data set '{0}' (valid: fashion-mnist, mnist, cifar10, npy, image-folder)")]
pub struct UnknownDataset(pub String);

impl FromStr for DatasetName {
    type Err = UnknownDataset;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "fashion-mnist" | "fashionmnist" => Ok(DatasetName::FashionMnist),
            "mnist" => Ok(DatasetName::Mnist),
            "cifar10" | "cifar-10" => Ok(DatasetName::Cifar10),
            "npy" | "npz" => Ok(DatasetName::Npy),
            "image-folder" | "imagefolder" | "folder" => Ok(DatasetName::ImageFolder),
            _ => Err(UnknownDataset(s.to_string())),
        }
    }
}

/// Which half of a data set's official train/test division.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training split (60 000 images for the MNISTs, 50 000 for CIFAR-10).
    Train,
    /// The held-out test split (10 000 images for each known data set).
    Test,
}

impl Split {
    /// Lower-case name for messages: `"train"` or `"test"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Load a split of a data set from `dir`. An image folder needs the model's input shape:
/// use [`load_sized`] for it.
pub fn load(name: DatasetName, dir: &Path, split: Split) -> Result<Dataset, DataError> {
    load_sized(name, dir, split, None)
}

/// [`load`], with the `(channels, height, width)` an image folder's pictures are resized
/// and cropped to (the other formats keep their own shape and ignore it).
pub fn load_sized(
    name: DatasetName,
    dir: &Path,
    split: Split,
    shape: Option<(usize, usize, usize)>,
) -> Result<Dataset, DataError> {
    if !dir.exists() {
        return Err(DataError::Missing {
            path: dir.to_path_buf(),
            hint: name.missing_hint(),
        });
    }
    if !dir.is_dir() {
        return Err(DataError::invalid(
            dir,
            format!("not a directory (--data must name the directory holding the {name} files)"),
        ));
    }
    match name {
        DatasetName::FashionMnist | DatasetName::Mnist => {
            idx::load_idx_split(dir, split, name.class_names())
        }
        DatasetName::Cifar10 => cifar::load_cifar_split(dir, split, name.class_names()),
        DatasetName::Npy => npy::load_npy_split(dir, split),
        DatasetName::ImageFolder => match shape {
            Some(shape) => folder::load_image_folder(dir, split, shape),
            None => Err(DataError::invalid(
                dir,
                "an image folder is resized to the model's input: its shape must be given",
            )),
        },
    }
}
