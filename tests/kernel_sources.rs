//! Every kernel source compiles without a GPU: the WGSL modules parse and validate with naga, and
//! the CUDA modules compile with NVRTC (from the toolkit or NVIDIA's PyPI wheel; CI installs the
//! wheel and sets UMBRA_REQUIRE_NVRTC=1 so that the check cannot be skipped there).

use umbra::backend::gpu::{module_sources, Kernel, MODULES};

#[test]
fn every_wgsl_module_parses_and_validates() {
    for m in MODULES {
        let (_, wgsl) = module_sources(m).unwrap();
        let module = naga::front::wgsl::parse_str(&wgsl)
            .unwrap_or_else(|e| panic!("{m}.wgsl: {}", e.emit_to_string(&wgsl)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{m}.wgsl does not validate without extra capabilities: {e:?}"));
        for k in Kernel::ALL.iter().filter(|k| k.module() == m) {
            let ep = module
                .entry_points
                .iter()
                .find(|e| e.name == k.entry())
                .unwrap_or_else(|| panic!("{m}.wgsl lacks entry point {}", k.entry()));
            assert_eq!(ep.workgroup_size, [256, 1, 1], "{}", k.entry());
        }
    }
}

#[test]
fn cuda_and_wgsl_define_the_same_entry_points() {
    for m in MODULES {
        let (cu, wgsl) = module_sources(m).unwrap();
        for k in Kernel::ALL.iter().filter(|k| k.module() == m) {
            let e = k.entry();
            assert!(cu.contains(&format!("void {e}(")), "{m}.cu lacks {e}");
            assert!(wgsl.contains(&format!("fn {e}(")), "{m}.wgsl lacks {e}");
        }
    }
}

#[cfg(feature = "cuda")]
#[test]
fn every_cuda_module_compiles_with_nvrtc() {
    use umbra::backend::cuda::{compile_module, compile_module_cubin, nvrtc_present};
    if !nvrtc_present() {
        assert!(
            std::env::var("UMBRA_REQUIRE_NVRTC").is_err(),
            "UMBRA_REQUIRE_NVRTC is set but libnvrtc cannot be loaded (LD_LIBRARY_PATH?)"
        );
        eprintln!("skipping the NVRTC compile: libnvrtc not found (install nvidia-cuda-nvrtc-cu12 and add its lib/ to LD_LIBRARY_PATH)");
        return;
    }
    for arch in ["compute_80", "compute_90"] {
        for m in MODULES {
            let ptx = compile_module(m, arch).unwrap_or_else(|e| panic!("{arch}: {e}"));
            let src = ptx.to_src();
            for k in Kernel::ALL.iter().filter(|k| k.module() == m) {
                assert!(
                    src.contains(&format!(".entry {}(", k.entry())),
                    "{m}.cu PTX lacks .entry {}",
                    k.entry()
                );
            }
        }
    }
    // What a GPU actually loads: a cubin for its real architecture (A100, H100).
    for arch in ["sm_80", "sm_90"] {
        for m in MODULES {
            let bin = compile_module_cubin(m, arch).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&bin[..4], b"\x7fELF", "{m} for {arch} is not an ELF cubin");
        }
    }
    // A kernel error is reported with NVRTC's log, not a panic.
    assert!(compile_module_cubin("ntt", "sm_1").is_err());
}
