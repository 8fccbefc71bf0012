//! The part of Python's pickle protocol 2 that `torch.save` uses for a state dict, written by
//! hand: no maintained crate emits it. `serde-pickle` serialises plain data only (no `GLOBAL`,
//! `REDUCE` or persistent ids, which a tensor needs); `pytorch-reader`, candle and burn-store read
//! `.pth` files but do not write them (burn-store's `PytorchStore` refuses to save); `tch`
//! writes through libtorch, a C++ dependency afan does not take. The subset is small and fixed:
//! the opcodes below are exactly those CPython's pickler emits for `torch.save(state_dict)` and
//! all of them are accepted by `torch.load(weights_only=True)`, PyTorch's default since 2.6.

/// Opcodes (CPython `Lib/pickle.py`).
mod op {
    pub const PROTO: u8 = 0x80;
    pub const STOP: u8 = b'.';
    pub const GLOBAL: u8 = b'c';
    pub const MARK: u8 = b'(';
    pub const TUPLE: u8 = b't';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const REDUCE: u8 = b'R';
    pub const SETITEMS: u8 = b'u';
    pub const BINPERSID: u8 = b'Q';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const BININT: u8 = b'J';
    pub const LONG1: u8 = 0x8a;
    pub const BINUNICODE: u8 = b'X';
    pub const NEWFALSE: u8 = 0x89;
}

/// A pickle stream under construction. Nothing is memoised (`PUT`/`GET` are optional: each
/// object here is referenced once).
pub(crate) struct Pickler {
    out: Vec<u8>,
}

impl Pickler {
    /// A protocol-2 stream, as `torch.save`'s default `pickle_protocol=2` writes.
    pub(crate) fn new() -> Self {
        Self {
            out: vec![op::PROTO, 2],
        }
    }

    /// `module.name`, looked up by the unpickler (`GLOBAL`).
    pub(crate) fn global(&mut self, module: &str, name: &str) {
        self.out.push(op::GLOBAL);
        for part in [module, name] {
            self.out.extend_from_slice(part.as_bytes());
            self.out.push(b'\n');
        }
    }

    /// Starts a mapping's key/value pairs (closed by [`Pickler::set_items`]).
    pub(crate) fn mark(&mut self) {
        self.out.push(op::MARK);
    }

    /// Starts a tuple of `len` items, to be pushed next and closed by [`Pickler::end_tuple`]
    /// with the same `len` (CPython marks only tuples of more than three).
    pub(crate) fn begin_tuple(&mut self, len: usize) {
        if len > 3 {
            self.out.push(op::MARK);
        }
    }

    /// Closes a tuple of `len` items begun by [`Pickler::begin_tuple`].
    pub(crate) fn end_tuple(&mut self, len: usize) {
        self.out.push(match len {
            0 => op::EMPTY_TUPLE,
            1 => op::TUPLE1,
            2 => op::TUPLE2,
            3 => op::TUPLE3,
            _ => op::TUPLE,
        });
    }

    /// Calls the callable below the argument tuple on top of the stack.
    pub(crate) fn reduce(&mut self) {
        self.out.push(op::REDUCE);
    }

    /// Sets the key/value pairs since the last mark on the mapping below them.
    pub(crate) fn set_items(&mut self) {
        self.out.push(op::SETITEMS);
    }

    /// The object on top of the stack is a persistent id (resolved by the unpickler's
    /// `persistent_load`, torch's storage table).
    pub(crate) fn persistent_id(&mut self) {
        self.out.push(op::BINPERSID);
    }

    /// A Python `int`, in the encoding CPython chooses.
    pub(crate) fn int(&mut self, v: i64) {
        if (0..256).contains(&v) {
            self.out.extend([op::BININT1, v as u8]);
        } else if (0..65536).contains(&v) {
            self.out.push(op::BININT2);
            self.out.extend_from_slice(&(v as u16).to_le_bytes());
        } else if let Ok(v) = i32::try_from(v) {
            self.out.push(op::BININT);
            self.out.extend_from_slice(&v.to_le_bytes());
        } else {
            // LONG1: the shortest little-endian two's complement (`pickle.encode_long`).
            let bytes = v.to_le_bytes();
            let mut n = 8;
            while n > 1 {
                let (top, next) = (bytes[n - 1], bytes[n - 2]);
                let redundant = (top == 0 && next & 0x80 == 0) || (top == 0xff && next & 0x80 != 0);
                if !redundant {
                    break;
                }
                n -= 1;
            }
            self.out.extend([op::LONG1, n as u8]);
            self.out.extend_from_slice(&bytes[..n]);
        }
    }

    /// A Python `str`.
    pub(crate) fn str(&mut self, s: &str) {
        self.out.push(op::BINUNICODE);
        let len = u32::try_from(s.len()).expect("a state-dict key shorter than 4 GiB");
        self.out.extend_from_slice(&len.to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }

    /// `False`.
    pub(crate) fn false_(&mut self) {
        self.out.push(op::NEWFALSE);
    }

    /// A tuple of ints (a shape or a stride).
    pub(crate) fn int_tuple(&mut self, values: &[usize]) {
        self.begin_tuple(values.len());
        for &v in values {
            self.int(v as i64);
        }
        self.end_tuple(values.len());
    }

    /// Ends the stream and returns its bytes.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.out.push(op::STOP);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte for byte what CPython gives, memo opcodes aside: the expected bytes are
    /// `pickletools.optimize(pickle.dumps(obj, protocol=2))` (which drops the unused `PUT`s).
    #[test]
    fn encodings_match_cpython() {
        let mut p = Pickler::new();
        p.int_tuple(&[3, 300, 70_000]);
        assert_eq!(p.finish(), b"\x80\x02K\x03M,\x01Jp\x11\x01\x00\x87.");
        let mut p = Pickler::new();
        p.int_tuple(&[3, 300, 70_000, 5]);
        assert_eq!(p.finish(), b"\x80\x02(K\x03M,\x01Jp\x11\x01\x00K\x05t.");
        // ('fc.weight', -1, 1 << 40, -(1 << 40), 255, 65535, 65536, 2**31, -129, 128)
        let mut p = Pickler::new();
        p.begin_tuple(10);
        p.str("fc.weight");
        for v in [
            -1,
            1 << 40,
            -(1 << 40),
            255,
            65535,
            65536,
            1 << 31,
            -129,
            128,
        ] {
            p.int(v);
        }
        p.end_tuple(10);
        assert_eq!(
            p.finish(),
            b"\x80\x02(X\t\x00\x00\x00fc.weightJ\xff\xff\xff\xff\x8a\x06\x00\x00\x00\x00\x00\x01\
              \x8a\x06\x00\x00\x00\x00\x00\xffK\xffM\xff\xffJ\x00\x00\x01\x00\x8a\x05\x00\x00\x00\
              \x80\x00J\x7f\xff\xff\xffK\x80t."
        );
        // collections.OrderedDict()
        let mut p = Pickler::new();
        p.global("collections", "OrderedDict");
        p.end_tuple(0);
        p.reduce();
        assert_eq!(p.finish(), b"\x80\x02ccollections\nOrderedDict\n)R.");
        // (False, ())
        let mut p = Pickler::new();
        p.begin_tuple(2);
        p.false_();
        p.int_tuple(&[]);
        p.end_tuple(2);
        assert_eq!(p.finish(), b"\x80\x02\x89)\x86.");
    }
}
