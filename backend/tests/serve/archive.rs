//! Real cutouts fetched from SDSS's archive on demand, and the SkyServer setting.

use super::*;

/// `serve --archive`: a catalog object without a cutout gets one, cut from its
/// field's frames fetched from the archive (served in this process), the same
/// pixels `ingest` cuts from the same frames; it survives a restart.
#[test]
fn a_catalog_objects_real_cutout_is_fetched_from_the_archive_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    // The bundled catalogs hold no object on the bundled field: a catalog that
    // does, with real/ and synthetic/ from the shared data directory.
    copy_tree(&data_dir().join("real"), &dir.path().join("real"));
    copy_tree(&data_dir().join("synthetic"), &dir.path().join("synthetic"));
    let csv = dir.path().join("objects.csv");
    std::fs::write(
        &csv,
        "objid,ra,dec,u,g,r,i,z,run,rerun,camcol,field,specobjid,class,redshift\n\
         1,38.30,-0.10,20.1,19.0,18.2,17.8,17.5,2820,301,3,122,0,GALAXY,0.11\n\
         4,183.5,0.09,19.4,17.0,15.9,15.5,15.2,752,301,4,267,0,STAR,0.0\n",
    )
    .unwrap();
    let csv_arg = csv.to_str().unwrap();
    common::ok_json(&[
        "catalog",
        "import",
        csv_arg,
        "--out",
        dir.path().join("catalog").to_str().unwrap(),
        "--json",
    ]);
    let archive = common::archive::Shared::default();
    let url = common::archive::serve(archive.clone());
    let s = start_with(
        dir.path(),
        "127.0.0.1:0",
        &[],
        &["--archive", &url, "--archive-catalog", csv_arg],
    );
    let galaxy = cosmicai_engine::partition::object_id(38.30, -0.10);
    let detail = get(&s, &format!("/api/objects/{galaxy}")).json();
    assert_eq!(detail["object"]["has_image"], false);
    assert_eq!(
        detail["archive"],
        serde_json::json!({"field": "002820-3-0122", "state": "available"})
    );
    assert_eq!(
        get(&s, &format!("/api/objects/{galaxy}/image.png")).status,
        404
    );

    let asked = post(&s, &format!("/api/objects/{galaxy}/fetch"), "", &[]);
    assert_eq!(
        asked.status,
        202,
        "{}",
        String::from_utf8_lossy(&asked.body)
    );
    let detail = archive_outcome(&s, galaxy);
    assert_eq!(detail["archive"]["state"], "ready", "{detail}");
    assert_eq!(detail["object"]["has_image"], true);
    assert_eq!(detail["object"]["provenance"], "real");
    assert_eq!(detail["image_size"], 64);
    let png = get(&s, &format!("/api/objects/{galaxy}/image.png?view=r"));
    assert_eq!(png.status, 200);
    assert_eq!(&png.body[..4], b"\x89PNG");
    // Exactly the field's five frames were asked for; asking again fetches nothing.
    assert_eq!(archive.lock().unwrap().requests.len(), 5);
    assert_eq!(
        post(&s, &format!("/api/objects/{galaxy}/fetch"), "", &[]).json()["state"],
        "ready"
    );
    assert_eq!(archive.lock().unwrap().requests.len(), 5);

    // The pixels are those `ingest` cuts from the same frames.
    let served = get(&s, &format!("/api/cutouts?ids={galaxy}"));
    let served = cosmicai_shared::cutouts::decode(&served.body).unwrap();
    let ingested = dir.path().join("ingested");
    common::ok_json(&[
        "ingest",
        "--frames",
        &asset(common::archive::FIELD_DIR),
        "--catalog",
        csv_arg,
        "--out",
        ingested.to_str().unwrap(),
        "--json",
    ]);
    let listed = cosmicai_engine::dataset::list_partitions(&ingested).unwrap();
    let cut = cosmicai_engine::partition::read_partition(&listed[0]).unwrap();
    let row = cut.object_id.iter().position(|&id| id == galaxy).unwrap();
    let plane = 5 * 64 * 64;
    let same = |a: f32, b: f32| a == b || (a.is_nan() && b.is_nan());
    let ingested_pixels = &cut.images.unwrap().pixels[row * plane..(row + 1) * plane];
    // One cutout, the galaxy's, of 5 planes of 64 x 64: compared whole below.
    assert_eq!(served.len(), 1);
    assert_eq!((served[0].id, served[0].side), (galaxy, 64));
    assert_eq!(served[0].pixels.len(), plane);
    assert!(
        served[0]
            .pixels
            .iter()
            .zip(ingested_pixels)
            .all(|(a, b)| same(*a, *b))
    );

    // An object whose field the archive lacks fails, saying which frame.
    let star = cosmicai_engine::partition::object_id(183.5, 0.09);
    post(&s, &format!("/api/objects/{star}/fetch"), "", &[]);
    let detail = archive_outcome(&s, star);
    assert_eq!(detail["archive"]["state"], "failed", "{detail}");
    let error = detail["archive"]["error"].as_str().unwrap();
    assert!(error.contains("frame-u-000752-4-0267.fits.bz2"), "{error}");

    // After a restart without --archive the cutout is still the object's image.
    drop(s);
    let s = start_with(dir.path(), "127.0.0.1:0", &[], &[]);
    let detail = get(&s, &format!("/api/objects/{galaxy}")).json();
    assert_eq!(detail["object"]["has_image"], true, "{detail}");
    assert_eq!(detail["object"]["source"], "SDSS archive");
    assert!(detail.get("archive").is_none());
    assert_json_error(
        &post(&s, &format!("/api/objects/{star}/fetch"), "", &[]),
        404,
        "--archive",
    );
}

/// Object `id`'s detail once its archive fetch is over (ready or failed).
fn archive_outcome(s: &Server, id: i64) -> Value {
    for _ in 0..600 {
        let detail = get(s, &format!("/api/objects/{id}")).json();
        if matches!(
            detail["archive"]["state"].as_str(),
            Some("ready" | "failed")
        ) {
            return detail;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("object {id}: the archive fetch did not end in 60 s");
}

#[test]
fn settings_name_the_skyserver_and_a_bad_address_is_refused() {
    let s = start();
    let settings = get(&s, "/api/settings").json();
    assert_eq!(
        settings,
        serde_json::json!({
            "skyserver_jpeg": "https://skyserver.sdss.org/dr17/SkyServerWS/ImgCutout/getjpeg",
            "archive": false
        })
    );
    for bad in [
        "javascript:alert(1)",
        "https://sky.example/jpeg?x=\"><script>",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_cosmicai"))
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--skyserver",
                bad,
                "--data-dir",
            ])
            .arg(data_dir())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("--skyserver"),
            "{stderr}"
        );
    }
}
