//! How a bundle's data section maps onto RaptorQ source blocks: one stored
//! chunk is one block. Every block has the same number of source symbols,
//! `k_max = ceil(chunk_size / T)`; a block's symbols past its real length
//! are zeros that both ends know, so they are never sent. One K for all
//! blocks means one RaptorQ encoding plan (generating a plan costs about
//! 0.3 s per distinct K) and predictable decode cost.

use metalcast_image::Manifest;
use raptorq::ObjectTransmissionInformation;

use crate::error::TransportError;
use crate::packet::MAX_BLOCKS;
use crate::session::SYMBOL_ALIGNMENT;

/// One source block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// Chunk index in the manifest.
    pub chunk: usize,
    /// Offset of the chunk's stored bytes in the data section.
    pub offset: u64,
    /// Stored bytes (the block's real length before padding).
    pub len: u32,
    /// Source symbols that carry data: `ceil(len / T)`; the rest up to
    /// [`Layout::k_max`] are implicit zeros.
    pub k: u32,
}

/// The block table of a session.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Symbol size T.
    pub symbol_size: u16,
    /// Source symbols of every block (RaptorQ's K).
    pub k_max: u32,
    /// Blocks in send order.
    pub blocks: Vec<Block>,
}

impl Layout {
    /// Derives the block table from a (validated) manifest.
    pub fn new(m: &Manifest, symbol_size: u16) -> Layout {
        let t = u64::from(symbol_size);
        let blocks = m
            .stored_chunks()
            .map(|s| Block {
                chunk: s.index,
                offset: s.offset,
                len: s.stored,
                k: u64::from(s.stored).div_ceil(t) as u32,
            })
            .collect();
        let k_max = (u64::from(m.chunk_size).div_ceil(t) as u32).max(1);
        Layout { symbol_size, k_max, blocks }
    }

    /// Checks that the block numbers fit the wire's 24-bit field.
    pub fn check_wire(&self) -> Result<(), TransportError> {
        if self.blocks.len() > MAX_BLOCKS {
            return Err(TransportError::Config(format!(
                "the image has {} stored chunks; a session carries at most {MAX_BLOCKS} blocks (24-bit block numbers)",
                self.blocks.len()
            )));
        }
        Ok(())
    }

    /// RaptorQ parameters of every block (one source block of `k_max`
    /// symbols, no sub-blocks).
    pub fn oti(&self) -> ObjectTransmissionInformation {
        ObjectTransmissionInformation::new(self.padded_len() as u64, self.symbol_size, 1, 1, SYMBOL_ALIGNMENT as u8)
    }

    /// Bytes of a block padded to `k_max` symbols.
    pub fn padded_len(&self) -> usize {
        self.k_max as usize * usize::from(self.symbol_size)
    }
}
