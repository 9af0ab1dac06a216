//! Datasets on disk: formats, blocks across files, streaming reductions
//! within a host budget, and clear errors for broken files.

use std::path::{Path, PathBuf};
use tessera::dataset::{npy_header, write_npy, Dataset, DatasetError, Order};
use tessera::{DType, Runtime, TileData, TileShape};

fn scratch(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("tessera-ds-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// Value of element (i, j) of the test arrays.
fn value(i: usize, j: usize) -> f64 {
    (i % 7) as f64 + 0.5 * j as f64
}

/// Writes rows `first..first + rows` of the test array (C order, f64).
fn write_rows(path: &Path, first: usize, rows: usize, cols: usize) {
    let mut bytes = npy_header(DType::F64, rows, cols, Order::RowMajor);
    for i in first..first + rows {
        for j in 0..cols {
            bytes.extend_from_slice(&value(i, j).to_le_bytes());
        }
    }
    std::fs::write(path, bytes).unwrap();
}

/// Column sums of the dataset through the runtime.
fn column_sums(rt: &Runtime, ds: &Dataset, per_block: usize) -> Vec<f64> {
    match ds.line_sums(rt, per_block, 2).unwrap() {
        TileData::F64(v) => v,
        TileData::F32(_) => unreachable!(),
    }
}

#[test]
fn a_directory_of_npy_files_streams_within_a_small_budget() {
    let dir = scratch("dir");
    let (cols, parts) = (48, [(0, 50), (50, 37), (87, 64)]);
    for (k, (first, rows)) in parts.iter().enumerate() {
        write_rows(&dir.join(format!("part{k}.npy")), *first, *rows, cols);
    }
    std::fs::write(dir.join("notes.txt"), "not data").unwrap();
    let before: Vec<Vec<u8>> = (0..3)
        .map(|k| std::fs::read(dir.join(format!("part{k}.npy"))).unwrap())
        .collect();
    let ds = Dataset::npy_dir(&dir).unwrap();
    assert_eq!((ds.rows, ds.cols, ds.order), (151, 48, Order::RowMajor));
    // A block straddles the first two files: rows 40..60, transposed.
    let block = ds.read_block(2, 20).unwrap();
    assert_eq!(ds.block_shape(2, 20), TileShape::new(48, 20));
    for (c, i) in (40..60).enumerate() {
        for j in 0..cols {
            assert_eq!(block.get(cols, j, c), value(i, j));
        }
    }
    // A budget of a few blocks for a dataset many times larger.
    let block_bytes = (cols * 16 * 8) as u64;
    let rt = Runtime::builder()
        .cpu_workers(2)
        .devices(&["cpu"])
        .host_memory(6 * block_bytes)
        .build()
        .unwrap();
    let sums = column_sums(&rt, &ds, 16);
    for (j, s) in sums.iter().enumerate() {
        let want: f64 = (0..151).map(|i| value(i, j)).sum();
        assert!((s - want).abs() < 1e-9, "column {j}: {s} vs {want}");
    }
    // Nothing was written to the dataset.
    for (k, bytes) in before.iter().enumerate() {
        assert_eq!(
            &std::fs::read(dir.join(format!("part{k}.npy"))).unwrap(),
            bytes
        );
    }
    // Results go out as .npy and read back the same.
    let out = dir.join("out").with_extension("npy");
    write_npy(&out, &TileData::F64(sums.clone()), cols, 1).unwrap();
    let back = Dataset::npy(&out).unwrap();
    assert_eq!(
        (back.rows, back.cols, back.order),
        (48, 1, Order::ColumnMajor)
    );
    assert_eq!(back.read_block(0, 1).unwrap(), TileData::F64(sums));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn raw_and_fortran_order_files_read_as_column_blocks() {
    let dir = scratch("raw");
    let (rows, cols) = (5, 9);
    // Column-major f32: block b holds columns.
    let data: Vec<f32> = (0..rows * cols).map(|k| k as f32).collect();
    let raw = dir.join("a.bin");
    std::fs::write(&raw, bytemuck_bytes(&data)).unwrap();
    let ds = Dataset::raw(&raw, DType::F32, rows, cols, Order::ColumnMajor).unwrap();
    let b = ds.read_block(2, 4).unwrap(); // columns 8..9
    assert_eq!(b, TileData::F32(vec![40.0, 41.0, 42.0, 43.0, 44.0]));
    assert_eq!(ds.block_count(4), 3);
    // Fortran-order .npy from write_npy.
    let f = dir.join("f.npy");
    write_npy(&f, &TileData::F32(data.clone()), rows, cols).unwrap();
    let ds = Dataset::npy(&f).unwrap();
    assert_eq!(ds.read_block(0, 9).unwrap(), TileData::F32(data));
    std::fs::remove_dir_all(dir).unwrap();
}

fn bytemuck_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn broken_dataset_files_are_clear_errors() {
    let dir = scratch("bad");
    let path = dir.join("t.npy");
    write_rows(&path, 0, 10, 4);
    // Truncated: cut the last row off.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 8]).unwrap();
    let err = Dataset::npy(&path).unwrap_err().to_string();
    assert!(err.contains("t.npy") && err.contains("truncated"), "{err}");
    // Not an .npy file.
    std::fs::write(&path, b"hello, world").unwrap();
    assert!(Dataset::npy(&path)
        .unwrap_err()
        .to_string()
        .contains("magic"));
    // Big-endian data.
    let mut be = npy_header(DType::F64, 1, 1, Order::RowMajor);
    let at = be.windows(3).position(|w| w == b"<f8").unwrap();
    be[at] = b'>';
    be.extend_from_slice(&[0; 8]);
    std::fs::write(&path, be).unwrap();
    let err = Dataset::npy(&path).unwrap_err().to_string();
    assert!(err.contains(">f8"), "{err}");
    // Missing file, and a raw file too short for its shape.
    assert!(matches!(
        Dataset::npy(dir.join("missing.npy")),
        Err(DatasetError::File { .. })
    ));
    std::fs::write(dir.join("r.bin"), [0u8; 10]).unwrap();
    assert!(
        Dataset::raw(dir.join("r.bin"), DType::F64, 2, 2, Order::RowMajor)
            .unwrap_err()
            .to_string()
            .contains("truncated")
    );
    // Files that do not stack.
    let stack = scratch("stack");
    write_rows(&stack.join("a.npy"), 0, 3, 4);
    write_rows(&stack.join("b.npy"), 0, 3, 5);
    assert!(Dataset::npy_dir(&stack)
        .unwrap_err()
        .to_string()
        .contains("does not stack"));
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::remove_dir_all(stack).unwrap();
}
