//! Seed 004's thumbnail maker: a 75×75 thumbnail of every JPEG in a folder,
//! made by a pool, with a progress bar, timed against one process.
//!
//! ```sh
//! cargo run --release --example thumbnails              # makes sample images first
//! cargo run --release --example thumbnails -- ~/photos  # your own folder
//! ```
//!
//! Thumbnails go to `thumbs/` inside the folder. With no folder given, a
//! few hundred sample images are drawn into a temporary folder first (by
//! the pool too), so the example runs anywhere; that folder is removed at
//! the end.

use std::path::{Path, PathBuf};
use std::time::Instant;

use multiproc::Pool;

const SIZE: u32 = 75;
const SAMPLES: u32 = 300;

/// Python's `create_thumbnail(filename)`; the output folder is a second
/// argument instead of a global. Errors come back as text, per image.
fn create_thumbnail(filename: String, save_directory: String) -> Result<String, String> {
    let im = image::open(&filename).map_err(|e| format!("{filename}: {e}"))?;
    let thumb = im.thumbnail(SIZE, SIZE);
    let name = Path::new(&filename)
        .file_name()
        .ok_or_else(|| format!("{filename}: no file name"))?;
    let save_path = Path::new(&save_directory).join(name);
    thumb
        .save(&save_path)
        .map_err(|e| format!("{}: {e}", save_path.display()))?;
    Ok(save_path.display().to_string())
}

/// Draws sample image `n` (640×480, a pattern that varies with `n`).
fn make_sample(folder: String, n: u32) -> Result<(), String> {
    let img = image::RgbImage::from_fn(640, 480, |x, y| {
        let r = ((x + n * 7) % 256) as u8;
        let g = ((y + n * 13) % 256) as u8;
        let b = (((x ^ y) + n * 29) % 256) as u8;
        image::Rgb([r, g, b])
    });
    let path = Path::new(&folder).join(format!("sample-{n:04}.jpeg"));
    img.save(&path)
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn get_image_paths(folder: &Path) -> std::io::Result<Vec<String>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(folder)? {
        let path = entry?.path();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if matches!(ext.as_deref(), Some("jpg" | "jpeg")) {
            paths.push(path.display().to_string());
        }
    }
    paths.sort();
    Ok(paths)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();
    let pool = Pool::builder().progress_bar(true).build()?;

    let (folder, temporary) = match std::env::args().nth(1) {
        Some(folder) => (PathBuf::from(folder), false),
        None => {
            let folder =
                std::env::temp_dir().join(format!("multiproc-thumbnails-{}", std::process::id()));
            std::fs::create_dir_all(&folder)?;
            println!("drawing {SAMPLES} sample images into {}", folder.display());
            let f = folder.display().to_string();
            for r in pool.map(make_sample, (0..SAMPLES).map(|n| (f.clone(), n)))? {
                r?;
            }
            (folder, true)
        }
    };
    let save_directory = folder.join("thumbs");
    std::fs::create_dir_all(&save_directory)?;
    let save = save_directory.display().to_string();
    let images = get_image_paths(&folder)?;
    println!(
        "{} images in {}, {} workers",
        images.len(),
        folder.display(),
        pool.processes()
    );

    let t0 = Instant::now();
    let made = pool.map(
        create_thumbnail,
        images.iter().map(|p| (p.clone(), save.clone())),
    )?;
    let parallel = t0.elapsed();
    let failed: Vec<&String> = made.iter().filter_map(|r| r.as_ref().err()).collect();
    for e in &failed {
        eprintln!("failed: {e}");
    }

    let t0 = Instant::now();
    for p in &images {
        let _ = create_thumbnail(p.clone(), save.clone());
    }
    let single = t0.elapsed();

    println!(
        "pool.map: {} thumbnails in {:.2?} ({} failed); one process: {:.2?}; {:.1}× faster",
        made.len() - failed.len(),
        parallel,
        failed.len(),
        single,
        single.as_secs_f64() / parallel.as_secs_f64()
    );
    pool.close();
    pool.join()?;
    if temporary {
        std::fs::remove_dir_all(&folder)?;
    }
    Ok(())
}
