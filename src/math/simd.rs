//! Runtime CPU-feature dispatch for the hot loops.
//!
//! Hot loops are written once as plain Rust that LLVM auto-vectorizes; `multiversion!` compiles
//! each of them again with AVX2 and with AVX-512 enabled and picks the best at run time, so the
//! binary stays portable (no `-C target-cpu=native`) and still uses 8 or 16 u32 lanes.

/// Declares `fn $name(...)` that dispatches to AVX-512 / AVX2 / generic copies of `$body`.
#[macro_export]
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        #[inline]
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn generic($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,bmi2")]
                unsafe fn avx512($($arg: $ty),*) { generic($($arg),*) }
                #[target_feature(enable = "avx2,fma,bmi2")]
                unsafe fn avx2($($arg: $ty),*) { generic($($arg),*) }
                match $crate::math::simd::level() {
                    // SAFETY: the level was read from CPUID and the features are present.
                    2 => return unsafe { avx512($($arg),*) },
                    1 => return unsafe { avx2($($arg),*) },
                    _ => {}
                }
            }
            generic($($arg),*)
        }
    };
}

/// 2 = AVX-512, 1 = AVX2, 0 = neither (cached after the first call).
#[inline]
pub fn level() -> u8 {
    use std::sync::atomic::{AtomicU8, Ordering};
    static LEVEL: AtomicU8 = AtomicU8::new(u8::MAX);
    let l = LEVEL.load(Ordering::Relaxed);
    if l != u8::MAX {
        return l;
    }
    let l = detect();
    LEVEL.store(l, Ordering::Relaxed);
    l
}

fn detect() -> u8 {
    if std::env::var("UMBRA_NO_SIMD").is_ok() {
        return 0;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512dq")
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("bmi2")
        {
            return 2;
        }
        if is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("bmi2")
        {
            return 1;
        }
    }
    0
}
