//! Reader for the IDX format (the MNIST family's files), gzip-compressed or plain.

use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;

use super::DataError;

/// The decoded contents of one IDX file of unsigned bytes: its dimensions and its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub values: Vec<u8>,
}

const UNSIGNED_BYTE: u8 = 0x08;

/// Reads an IDX file of unsigned bytes; `.gz` files are decompressed on the fly.
pub fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    let io_error = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_error)?;
    let mut bytes = Vec::new();
    if path.extension().is_some_and(|ext| ext == "gz") {
        GzDecoder::new(file).read_to_end(&mut bytes)
    } else {
        std::io::BufReader::new(file).read_to_end(&mut bytes)
    }
    .map_err(io_error)?;
    parse_idx(&bytes).map_err(|reason| DataError::Malformed {
        path: path.to_path_buf(),
        reason,
    })
}

/// Parses IDX bytes: a zero pair, the element type, the rank, big-endian u32 dimensions, values.
pub fn parse_idx(bytes: &[u8]) -> Result<IdxArray, String> {
    let header = bytes
        .get(..4)
        .ok_or_else(|| "shorter than the 4-byte IDX magic number".to_string())?;
    if header[0] != 0 || header[1] != 0 {
        return Err(format!(
            "magic number starts {:#04x} {:#04x}, expected two zero bytes",
            header[0], header[1]
        ));
    }
    if header[2] != UNSIGNED_BYTE {
        return Err(format!(
            "element type {:#04x}, expected {UNSIGNED_BYTE:#04x} (unsigned byte)",
            header[2]
        ));
    }
    let rank = header[3] as usize;
    let dims_end = 4 + 4 * rank;
    let dims: Vec<usize> = bytes
        .get(4..dims_end)
        .ok_or_else(|| format!("truncated: the header declares {rank} dimensions"))?
        .chunks_exact(4)
        .map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize)
        .collect();
    let expected: usize = dims.iter().product();
    let values = &bytes[dims_end..];
    if values.len() != expected {
        return Err(format!(
            "holds {} values, its dimensions {dims:?} need {expected}",
            values.len()
        ));
    }
    Ok(IdxArray {
        dims,
        values: values.to_vec(),
    })
}

/// Encodes unsigned bytes as IDX (used to write fixtures).
pub fn encode_idx(dims: &[usize], values: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, UNSIGNED_BYTE, dims.len() as u8];
    for dim in dims {
        out.extend_from_slice(&(*dim as u32).to_be_bytes());
    }
    out.extend_from_slice(values);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_encode() {
        let array = parse_idx(&encode_idx(&[2, 3], &[1, 2, 3, 4, 5, 6])).unwrap();
        assert_eq!(array.dims, vec![2, 3]);
        assert_eq!(array.values, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn rejects_a_wrong_magic_number_and_truncation() {
        assert!(
            parse_idx(&[0, 1, 8, 1])
                .unwrap_err()
                .contains("two zero bytes")
        );
        assert!(
            parse_idx(&[0, 0, 0x0d, 1])
                .unwrap_err()
                .contains("unsigned byte")
        );
        assert!(
            parse_idx(&[0, 0, 8, 2, 0, 0])
                .unwrap_err()
                .contains("truncated")
        );
        let mut short = encode_idx(&[4], &[1, 2, 3, 4]);
        short.pop();
        assert!(parse_idx(&short).unwrap_err().contains("need 4"));
    }
}
