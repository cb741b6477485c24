//! No bytes on disk can make the log panic: arbitrary segment, index and checkpoint
//! contents are opened clean and unclean, read, searched and appended to. Corrupt data is
//! either cut by recovery or reported as an error, never served as a valid batch.

mod common;

use common::*;
use proptest::prelude::*;
use sluice_storage::batch;

fn exercise(dir: &std::path::Path, clean: bool) {
    let Ok((log, _)) = sluice_storage::PartitionLog::open(dir, small_segments(), &flusher(), clean)
    else {
        return;
    };
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    let mut steps = 0;
    while offset < end && steps < 1000 {
        steps += 1;
        match read_to_end(&log, offset, 1 << 16, true) {
            Ok(read) => {
                let mut advanced = false;
                for b in batch::batches(&read.records) {
                    let b = b.expect("a read returns whole batches");
                    let header =
                        batch::validate_stored_batch(b).expect("a read returns valid batches");
                    offset = offset.max(header.next_offset());
                    advanced = true;
                }
                if !advanced {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = log.offset_for_timestamp(0);
    let _ = log.max_timestamp_offset();
    let _ = log.append(&make_batch(2, 10, 0), 0, 0);
    let _ = log.apply_retention(i64::MAX / 2);
    let _ = log.close();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_files_never_panic(
        prefix_batches in 0usize..4,
        garbage in proptest::collection::vec(any::<u8>(), 0..400),
        index in proptest::collection::vec(any::<u8>(), 0..64),
        timeindex in proptest::collection::vec(any::<u8>(), 0..64),
        checkpoint in proptest::collection::vec(any::<u8>(), 0..24),
        clean in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut log_bytes = Vec::new();
        for i in 0..prefix_batches {
            let mut b = make_batch(1 + i, 20, 5).to_vec();
            batch::patch_base_offset(&mut b, (0..i).map(|k| 1 + k as i64).sum());
            log_bytes.extend_from_slice(&b);
        }
        log_bytes.extend_from_slice(&garbage);
        std::fs::write(dir.path().join("00000000000000000000.log"), &log_bytes).unwrap();
        std::fs::write(dir.path().join("00000000000000000000.index"), &index).unwrap();
        std::fs::write(dir.path().join("00000000000000000000.timeindex"), &timeindex).unwrap();
        std::fs::write(dir.path().join("recovery-point"), &checkpoint).unwrap();
        std::fs::write(dir.path().join("log-start-offset"), &checkpoint).unwrap();
        exercise(dir.path(), clean);
    }
}
