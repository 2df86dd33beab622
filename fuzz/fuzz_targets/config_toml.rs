//! The configuration loader (docs/reference.md §3) over arbitrary file contents: never panics;
//! the answer is either settings that pass validation and survive a round trip through
//! `tandem check`'s TOML, or one sentence (one line, not empty) saying what is wrong.
#![no_main]

use std::{path::PathBuf, sync::OnceLock};

use libfuzzer_sys::fuzz_target;
use tandem::Settings;

/// One file per fuzzing process, rewritten for every input: the loader reads a path.
fn scratch() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        std::env::temp_dir().join(format!("tandem-fuzz-{}.toml", std::process::id()))
    })
}

fn one_sentence(message: &str, input: &[u8]) {
    assert!(!message.trim().is_empty(), "empty error for {input:?}");
    assert!(
        !message.contains('\n'),
        "multi-line error for {input:?}: {message}"
    );
}

fuzz_target!(|data: &[u8]| {
    let file = scratch();
    std::fs::write(file, data).expect("the scratch file is writable");
    // No environment: the file alone decides.
    match Settings::load_from(Some(file), &[]) {
        Err(err) => one_sentence(&err.to_string(), data),
        Ok(settings) => {
            assert_eq!(settings.validate(), Ok(()));
            let text = settings.to_toml();
            std::fs::write(file, &text).expect("the scratch file is writable");
            match Settings::load_from(Some(file), &[]) {
                Ok(again) => assert_eq!(again, settings, "{text}"),
                Err(err) => panic!("`tandem check`'s own output is refused: {err}\n{text}"),
            }
        }
    }
});
