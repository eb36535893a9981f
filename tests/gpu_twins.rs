//! The GPU twins against the CPU reference, bit for bit (the `umbra selftest` checks): every ring
//! kernel at several ring sizes, then a CKKS pipeline. A backend that cannot open here (no driver,
//! no adapter) is skipped with the reason printed; CI has lavapipe, so the wgpu twin always runs
//! there.

use umbra::backend::Device;
use umbra::cli::tooling::selftest;

fn twin(device: Device) {
    if let Err(e) = device.available() {
        eprintln!("skipping the {device} twin: {e}");
        return;
    }
    let r = selftest::run(device, &[(3, 2), (11, 3), (13, 5)], 7).unwrap();
    let failed: Vec<String> = r
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| {
            format!(
                "{} (logN {}, {} limbs): {}",
                c.name, c.log_n, c.limbs, c.detail
            )
        })
        .collect();
    assert!(failed.is_empty(), "{device} on {}: {failed:#?}", r.device);
    assert!(r.passed > 60, "only {} checks ran", r.passed);
}

#[test]
fn cuda_matches_cpu_bit_for_bit() {
    twin(Device::Cuda);
}

#[test]
fn wgpu_matches_cpu_bit_for_bit() {
    twin(Device::Wgpu);
}

#[test]
fn missing_backends_give_errors_not_panics() {
    // Whatever this machine has, asking for each backend answers Ok or a clear error.
    for d in [Device::Cpu, Device::Cuda, Device::Wgpu] {
        match d.available() {
            Ok(()) => {}
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    assert!(Device::Cpu.available().is_ok());
    assert!("tpu".parse::<Device>().is_err());
}

#[test]
fn selftest_without_an_adapter_is_an_error_not_a_panic() {
    // No Vulkan driver at all: the loader finds no ICD, wgpu finds no adapter.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_umbra"))
        .args(["selftest", "--backend", "wgpu"])
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("backend `wgpu` cannot open"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn selftest_on_the_cpu_passes_and_reports_json() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_umbra"))
        .args(["selftest", "--backend", "cpu", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["backend"], "cpu");
    assert_eq!(v["failed"], 0);
    assert!(v["passed"].as_u64().unwrap() > 100);
    assert!(v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["passed"] == true));
}
