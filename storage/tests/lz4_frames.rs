//! lz4 record areas that Kafka's reader (`Lz4BlockInputStream`, which the Kafka broker's
//! validation and every Java consumer use) refuses or reads differently are refused on
//! append to a real log, with nothing stored; what Sluice's own producer and librdkafka
//! write is stored. (The frame rules themselves are unit-tested in
//! `storage/src/batch/compression.rs`.)

mod common;

use common::*;
use sluice_storage::batch::{self, BatchBuilder, Compression, HEADER_SIZE};
use sluice_storage::{BatchError, LogConfig, StorageError};
use twox_hash::XxHash32;

/// Three uncompressed records: the batch header and the record area, split.
fn header_and_records(now_ms: i64) -> (Vec<u8>, Vec<u8>) {
    let mut builder = BatchBuilder::new(Compression::None);
    for i in 0..3u8 {
        builder.push(now_ms, Some(&[i]), Some(&[b'v'; 40]), &[]);
    }
    let bytes = builder.build().unwrap().to_vec();
    let (header, records) = bytes.split_at(HEADER_SIZE);
    (header.to_vec(), records.to_vec())
}

/// The header with `area` as its lz4-compressed record area: length, codec and CRC set.
fn lz4_batch(header: &[u8], area: &[u8]) -> Vec<u8> {
    let mut batch = [header, area].concat();
    let length = (batch.len() - 12) as i32;
    batch[8..12].copy_from_slice(&length.to_be_bytes());
    let attributes = i16::from_be_bytes([batch[21], batch[22]]) | Compression::Lz4.id() as i16;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = batch::compute_crc(&batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// Magic, FLG, BD (64 KiB blocks) and the header checksum.
fn frame_header(flg: u8) -> Vec<u8> {
    let mut header = 0x184D_2204u32.to_le_bytes().to_vec();
    header.extend([flg, 0x40, (XxHash32::oneshot(0, &[flg, 0x40]) >> 8) as u8]);
    header
}

fn stored_block(data: &[u8]) -> Vec<u8> {
    let mut block = (data.len() as u32 | 0x8000_0000).to_le_bytes().to_vec();
    block.extend_from_slice(data);
    block
}

const INDEPENDENT: u8 = 0x60;
const LINKED: u8 = 0x40;
const END_MARK: [u8; 4] = [0; 4];

#[test]
fn frames_kafka_would_refuse_or_misread_are_refused_and_nothing_is_stored() {
    let now = sluice_storage::log::now_ms();
    let (header, records) = header_and_records(now);
    let (front, back) = records.split_at(records.len() / 2);
    let cases: [(&str, Vec<u8>); 4] = [
        (
            "A: 0x80000000 mid-frame is the end mark",
            [
                frame_header(INDEPENDENT),
                stored_block(front),
                0x8000_0000u32.to_le_bytes().to_vec(),
                stored_block(back),
                END_MARK.to_vec(),
            ]
            .concat(),
        ),
        (
            "B: records split across two frames",
            [
                frame_header(INDEPENDENT),
                stored_block(front),
                END_MARK.to_vec(),
                frame_header(INDEPENDENT),
                stored_block(back),
                END_MARK.to_vec(),
            ]
            .concat(),
        ),
        (
            "C: a skippable frame first",
            [
                0x184D_2A50u32.to_le_bytes().to_vec(),
                4u32.to_le_bytes().to_vec(),
                vec![0; 4],
                frame_header(INDEPENDENT),
                stored_block(&records),
                END_MARK.to_vec(),
            ]
            .concat(),
        ),
        (
            "D: linked blocks",
            [
                frame_header(LINKED),
                stored_block(&records),
                END_MARK.to_vec(),
            ]
            .concat(),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default(), true);
    // Every case is tried before asserting, so a failure names all that got through.
    let mut accepted = Vec::new();
    for (name, area) in cases {
        let result = log.append(&lz4_batch(&header, &area), 0, now);
        let refused_as_lz4 = matches!(
            &result,
            Err(StorageError::InvalidBatch(BatchError::Decompression {
                codec: "lz4",
                ..
            }))
        );
        if !refused_as_lz4 {
            accepted.push(format!("{name}: {result:?}"));
        }
    }
    assert!(accepted.is_empty(), "not refused: {accepted:#?}");
    assert_eq!(log.log_end_offset(), 0, "nothing stored");
    // The control: the same records in one frame of one stored block.
    let area = [
        frame_header(INDEPENDENT),
        stored_block(&records),
        END_MARK.to_vec(),
    ]
    .concat();
    let info = log.append(&lz4_batch(&header, &area), 0, now).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (0, 2));
    // And what Sluice's own producer writes (lz4_flex's FrameEncoder, Kafka's settings).
    let mut builder = BatchBuilder::new(Compression::Lz4);
    for i in 0..3u8 {
        builder.push(now, Some(&[i]), Some(&[b'w'; 40_000]), &[]);
    }
    let info = log.append(&builder.build().unwrap(), 0, now).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (3, 5));
    assert_eq!(log.log_end_offset(), 6);
    log.close().unwrap();
}
