//! Checkpoint loader: safetensors header, `__metadata__`, tensor names, shapes, dtypes, values.
//! First byte odd: through a file with the budget check (`load_with_budget`); even: `from_bytes`.
#![no_main]
use deltawkv_fuzz::model::Checkpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let result = if mode & 1 == 1 {
        let path = deltawkv_fuzz::scratch("ck.safetensors");
        if std::fs::write(&path, rest).is_err() {
            return;
        }
        let r = Checkpoint::load_with_budget(&path, deltawkv_fuzz::FUZZ_BUDGET);
        let _ = std::fs::remove_file(&path);
        r
    } else {
        Checkpoint::from_bytes(rest, "fuzz")
    };
    if let Ok(ck) = result {
        ck.validate("fuzz").expect("a loaded checkpoint validates");
    }
});
