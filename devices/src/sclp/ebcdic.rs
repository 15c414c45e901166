// SPDX-License-Identifier: Apache-2.0
//! EBCDIC (code page 037, the table Linux's `_ascebc` uses for the SCLP line-mode console)
//! to ASCII, for the characters an operator console shows. Anything else becomes `?`.

/// One EBCDIC byte as ASCII.
pub fn to_ascii(b: u8) -> u8 {
    match b {
        0x00 => 0,
        0x05 => b'\t',
        0x0d => b'\r',
        0x15 | 0x25 => b'\n',
        0x40 => b' ',
        0x4b => b'.',
        0x4c => b'<',
        0x4d => b'(',
        0x4e => b'+',
        0x4f => b'|',
        0x50 => b'&',
        0x5a => b'!',
        0x5b => b'$',
        0x5c => b'*',
        0x5d => b')',
        0x5e => b';',
        0x5f | 0xb0 => b'^',
        0x60 => b'-',
        0x61 => b'/',
        0x6a => b'|',
        0x6b => b',',
        0x6c => b'%',
        0x6d => b'_',
        0x6e => b'>',
        0x6f => b'?',
        0x79 => b'`',
        0x7a => b':',
        0x7b => b'#',
        0x7c => b'@',
        0x7d => b'\'',
        0x7e => b'=',
        0x7f => b'"',
        0x81..=0x89 => b'a' + (b - 0x81),
        0x91..=0x99 => b'j' + (b - 0x91),
        0xa1 => b'~',
        0xa2..=0xa9 => b's' + (b - 0xa2),
        0xad | 0xba => b'[',
        0xbd | 0xbb => b']',
        0xc0 => b'{',
        0xc1..=0xc9 => b'A' + (b - 0xc1),
        0xd0 => b'}',
        0xd1..=0xd9 => b'J' + (b - 0xd1),
        0xe0 => b'\\',
        0xe2..=0xe9 => b'S' + (b - 0xe2),
        0xf0..=0xf9 => b'0' + (b - 0xf0),
        _ => b'?',
    }
}

/// A string of EBCDIC bytes as ASCII.
pub fn decode(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(|&b| to_ascii(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_digits_and_punctuation() {
        // "Hello, World 42!" in EBCDIC 037.
        let e = [
            0xc8, 0x85, 0x93, 0x93, 0x96, 0x6b, 0x40, 0xe6, 0x96, 0x99, 0x93, 0x84, 0x40, 0xf4,
            0xf2, 0x5a,
        ];
        assert_eq!(decode(&e), b"Hello, World 42!");
        assert_eq!(decode(&[0xa9, 0xe9, 0xba, 0xbb, 0x7e, 0x25]), b"zZ[]=\n");
        assert_eq!(to_ascii(0xff), b'?');
    }
}
