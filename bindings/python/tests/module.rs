//! The module `cargo test` built (it builds this package's cdylib before
//! its tests) loads into the Python that will run the compatibility
//! suite: the package's files and the module, as the test command installs
//! them, imported by that interpreter.
use std::path::PathBuf;
use std::process::Command;

/// Where cargo put the module: beside this test, in `target/<profile>/deps`.
fn module_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    exe.parent().expect("deps dir").join("lib_native.so")
}

fn python() -> String {
    std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[test]
fn the_built_module_imports_with_its_package() {
    let so = module_path();
    assert!(so.is_file(), "{} was not built", so.display());
    let suffix = Command::new(python())
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))",
        ])
        .output()
        .expect("python3");
    let suffix = String::from_utf8_lossy(&suffix.stdout).trim().to_string();
    let dir = std::env::temp_dir().join(format!("aitier-py-{}", std::process::id()));
    let package = dir.join("aitier");
    std::fs::create_dir_all(&package).expect("package dir");
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/aitier/__init__.py");
    std::fs::copy(source, package.join("__init__.py")).expect("copy package");
    std::fs::copy(&so, package.join(format!("_native{suffix}"))).expect("copy module");
    let out = Command::new(python())
        .current_dir(&dir)
        .args([
            "-c",
            "import aitier, aitier._native as n; \
             assert issubclass(aitier.RateLimitError, aitier.APIError); \
             print(sorted(k for k in vars(n) if not k.startswith('_')))",
        ])
        .output()
        .expect("python3");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "['NativeClient', 'NativeTier', 'Stream', 'TierError']"
    );
}
