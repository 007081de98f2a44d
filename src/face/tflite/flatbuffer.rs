//! Just enough of the FlatBuffers wire format to read a TFLite model: tables through their vtables,
//! vectors, strings and scalars, every access bounds-checked (a truncated or corrupted file is an error,
//! never a panic).

/// A malformed buffer: what was being read and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FbError(pub String);

pub type FbResult<T> = Result<T, FbError>;

fn oob(what: &str, at: usize) -> FbError {
    FbError(format!("{what} at byte {at} lies outside the file (truncated or corrupted)"))
}

/// The whole file.
#[derive(Clone, Copy)]
pub struct Buf<'a>(pub &'a [u8]);

impl<'a> Buf<'a> {
    fn bytes<const N: usize>(&self, at: usize) -> FbResult<[u8; N]> {
        self.0
            .get(at..at.checked_add(N).ok_or_else(|| oob("offset", at))?)
            .map(|s| s.try_into().expect("length checked"))
            .ok_or_else(|| oob("value", at))
    }
    pub fn u8(&self, at: usize) -> FbResult<u8> {
        Ok(self.bytes::<1>(at)?[0])
    }
    pub fn u16(&self, at: usize) -> FbResult<u16> {
        Ok(u16::from_le_bytes(self.bytes(at)?))
    }
    pub fn u32(&self, at: usize) -> FbResult<u32> {
        Ok(u32::from_le_bytes(self.bytes(at)?))
    }
    pub fn i32(&self, at: usize) -> FbResult<i32> {
        Ok(i32::from_le_bytes(self.bytes(at)?))
    }

    /// Follows the forward offset stored at `at`.
    fn deref(&self, at: usize) -> FbResult<usize> {
        let target = at.checked_add(self.u32(at)? as usize).ok_or_else(|| oob("offset", at))?;
        if target >= self.0.len() {
            return Err(oob("offset target", target));
        }
        Ok(target)
    }

    /// The root table.
    pub fn root(&self) -> FbResult<Table<'a>> {
        Table::at(*self, self.deref(0)?)
    }
}

/// A table: its position and its vtable.
#[derive(Clone, Copy)]
pub struct Table<'a> {
    buf: Buf<'a>,
    pos: usize,
    vtable: usize,
    vtable_len: usize,
}

impl<'a> Table<'a> {
    fn at(buf: Buf<'a>, pos: usize) -> FbResult<Self> {
        // The vtable may sit before or after the table: the offset is signed.
        let vtable = pos as i64 - buf.i32(pos)? as i64;
        if vtable < 0 || vtable as usize >= buf.0.len() {
            return Err(oob("vtable", pos));
        }
        let vtable = vtable as usize;
        let vtable_len = buf.u16(vtable)? as usize;
        Ok(Table { buf, pos, vtable, vtable_len })
    }

    /// Position of field `id`, or `None` when absent (the schema default applies).
    pub(crate) fn field(&self, id: usize) -> FbResult<Option<usize>> {
        let slot = 4 + 2 * id;
        if slot + 2 > self.vtable_len {
            return Ok(None);
        }
        let off = self.buf.u16(self.vtable + slot)? as usize;
        Ok((off != 0).then_some(self.pos + off))
    }

    pub fn u8_or(&self, id: usize, default: u8) -> FbResult<u8> {
        self.field(id)?.map_or(Ok(default), |p| self.buf.u8(p))
    }
    pub fn i8_or(&self, id: usize, default: i8) -> FbResult<i8> {
        Ok(self.u8_or(id, default as u8)? as i8)
    }
    pub fn i32_or(&self, id: usize, default: i32) -> FbResult<i32> {
        self.field(id)?.map_or(Ok(default), |p| self.buf.i32(p))
    }
    pub fn u32_or(&self, id: usize, default: u32) -> FbResult<u32> {
        self.field(id)?.map_or(Ok(default), |p| self.buf.u32(p))
    }

    /// A sub-table.
    pub fn table(&self, id: usize) -> FbResult<Option<Table<'a>>> {
        self.field(id)?.map(|p| Table::at(self.buf, self.buf.deref(p)?)).transpose()
    }

    /// A vector: (position of the first element, length).
    fn vector(&self, id: usize, elem: usize) -> FbResult<Option<(usize, usize)>> {
        let Some(p) = self.field(id)? else { return Ok(None) };
        let v = self.buf.deref(p)?;
        let len = self.buf.u32(v)? as usize;
        let end = len.checked_mul(elem).and_then(|n| n.checked_add(v + 4)).ok_or_else(|| oob("vector", v))?;
        if end > self.buf.0.len() {
            return Err(oob("vector end", end));
        }
        Ok(Some((v + 4, len)))
    }

    pub fn tables(&self, id: usize) -> FbResult<Vec<Table<'a>>> {
        let Some((start, len)) = self.vector(id, 4)? else { return Ok(Vec::new()) };
        (0..len).map(|k| Table::at(self.buf, self.buf.deref(start + 4 * k)?)).collect()
    }

    pub fn i32s(&self, id: usize) -> FbResult<Vec<i32>> {
        let Some((start, len)) = self.vector(id, 4)? else { return Ok(Vec::new()) };
        (0..len).map(|k| self.buf.i32(start + 4 * k)).collect()
    }

    pub fn bytes(&self, id: usize) -> FbResult<&'a [u8]> {
        let Some((start, len)) = self.vector(id, 1)? else { return Ok(&[]) };
        Ok(&self.buf.0[start..start + len])
    }

    pub fn string(&self, id: usize) -> FbResult<String> {
        Ok(String::from_utf8_lossy(self.bytes(id)?).into_owned())
    }
}
