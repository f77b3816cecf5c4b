//! Objects, their images and the sky, as the explorer asks for them; a partition changed or odd under the server.

use super::*;

#[test]
fn objects_filter_page_and_show_images() {
    let s = start();
    let all = get(&s, "/api/objects?limit=5").json();
    let galaxies = get(&s, "/api/objects?class=GALAXY&limit=1000").json();
    assert_eq!(all["counts"]["galaxy"], galaxies["total"]);
    assert!(
        galaxies["objects"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["class"] == "GALAXY")
    );
    let slice = get(
        &s,
        "/api/objects?z_min=0.1&z_max=0.2&r_max=17&limit=1000&sort=redshift",
    )
    .json();
    let zs: Vec<f64> = slice["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["redshift"].as_f64().unwrap())
        .collect();
    assert!(!zs.is_empty() && zs.iter().all(|z| (0.1..=0.2).contains(&(*z as f32 as f64))));
    assert!(zs.windows(2).all(|w| w[0] <= w[1]), "sorted by redshift");
    // A range that holds nothing is named, not answered with an empty page.
    assert_json_error(
        &get(&s, "/api/objects?z_min=0.5&z_max=0.2"),
        400,
        "z_min=0.5 is above z_max=0.2",
    );
    // The other orders, and paging through them: a page continues where the last stopped.
    let column = |query: &str, field: &dyn Fn(&serde_json::Value) -> f64| -> Vec<f64> {
        get(&s, query).json()["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(field)
            .collect()
    };
    let z = |o: &serde_json::Value| o["redshift"].as_f64().unwrap_or(f64::NAN);
    let r = |o: &serde_json::Value| o["magnitudes"][2].as_f64().unwrap();
    let desc = column("/api/objects?class=QSO&sort=-redshift&limit=40", &z);
    let next = column(
        "/api/objects?class=QSO&sort=-redshift&limit=40&offset=40",
        &z,
    );
    assert!(desc.len() == 40 && next.len() == 40);
    let both: Vec<f64> = desc.iter().chain(&next).copied().collect();
    assert!(
        both.windows(2).all(|w| w[0] >= w[1]),
        "descending redshift: {both:?}"
    );
    let by_r = column("/api/objects?provenance=real&sort=r&limit=200", &r);
    assert!(
        by_r.windows(2).all(|w| w[0] <= w[1]),
        "sorted by r magnitude"
    );
    // The showcase order: a first page of labelled objects with images, every
    // class on it, classes taking turns; unlabelled detections come last.
    let objects = |query: &str| get(&s, query).json()["objects"].as_array().unwrap().clone();
    let first = objects("/api/objects?sort=showcase&limit=60");
    let classes: Vec<&str> = first.iter().map(|o| o["class"].as_str().unwrap()).collect();
    assert_eq!(&classes[..3], ["GALAXY", "STAR", "QSO"], "{classes:?}");
    assert!(!classes.contains(&"UNKNOWN"), "{classes:?}");
    assert!(first.iter().all(|o| o["has_image"] == true));
    let total = get(&s, "/api/objects?limit=1").json()["total"]
        .as_u64()
        .unwrap();
    let last = objects(&format!(
        "/api/objects?sort=showcase&limit=1&offset={}",
        total - 1
    ));
    assert_eq!(last[0]["class"], "UNKNOWN");
    let counted = get(&s, "/api/objects?z_max=0.3&r_min=15&limit=1").json();
    let sum: u64 = ["galaxy", "star", "qso", "unknown"]
        .iter()
        .map(|k| counted["counts"][k].as_u64().unwrap())
        .sum();
    assert_eq!(
        counted["total"].as_u64().unwrap(),
        sum,
        "counts add up to the total"
    );
    // Colour cuts (a box drawn on the explorer's colour plots): every object in
    // range, fewer than without, and the counts still add up.
    let cut = get(
        &s,
        "/api/objects?ug_min=1&ug_max=2&gr_min=0.3&gr_max=0.8&limit=1000",
    )
    .json();
    let in_cut = cut["objects"].as_array().unwrap();
    assert!(!in_cut.is_empty());
    for o in in_cut {
        let m = |k: usize| o["magnitudes"][k].as_f64().unwrap() as f32;
        // Cut on colours to a thousandth of a magnitude, as the plots draw them.
        let (ug, gr) = (m(0) - m(1), m(1) - m(2));
        assert!(
            (0.9995..=2.0005).contains(&ug) && (0.2995..=0.8005).contains(&gr),
            "{o}"
        );
    }
    assert!(cut["total"].as_u64().unwrap() < total);
    assert_json_error(&get(&s, "/api/objects?ri_max=lots"), 400, "ri_max");
    let synthetic = get(&s, "/api/objects?provenance=synthetic&limit=3").json();
    assert_eq!(synthetic["total"], 3000);
    let real_images = get(&s, "/api/objects?provenance=real&has_image=true&limit=2").json();
    assert!(real_images["total"].as_u64().unwrap() > 300);
    let id = real_images["objects"][0]["id"].as_i64().unwrap();

    let detail = get(&s, &format!("/api/objects/{id}")).json();
    assert_eq!(detail["image_size"], 64);
    assert_eq!(detail["object"]["provenance"], "real");
    assert!(detail["valid_fraction"].as_f64().unwrap() > 0.0);
    assert_eq!(detail["predictions"][0]["model"], "photoz (shipped)");

    let png = get(
        &s,
        &format!("/api/objects/{id}/image.png?view=gri&stretch=0.5&q=8"),
    );
    assert_eq!(png.status, 200);
    assert!(png.body.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert!(png.header("cache-control").unwrap().contains("max-age"));
    let etag = png.header("etag").unwrap();
    let again = request(
        &s,
        "GET",
        &format!("/api/objects/{id}/image.png?view=gri&stretch=0.5&q=8"),
        &[&format!("If-None-Match: {etag}")],
        b"",
    );
    assert_eq!(again.status, 304);
    assert_eq!(
        get(&s, &format!("/api/objects/{id}/image.png?view=r")).status,
        200
    );

    let cut = get(
        &s,
        &format!(
            "/api/cutouts?ids={id},{}&crop=32",
            real_images["objects"][1]["id"]
        ),
    );
    assert_eq!(cut.status, 200);
    assert_eq!(cut.body.len(), 8 + 2 * (8 + 5 * 32 * 32 * 4));
    assert_eq!(u32::from_le_bytes(cut.body[0..4].try_into().unwrap()), 2);
    assert_eq!(i64::from_le_bytes(cut.body[8..16].try_into().unwrap()), id);
    // Hostile lists: one object many times, or more than one reply holds (each
    // reply is held in memory until its client has taken it).
    assert_json_error(
        &get(&s, &format!("/api/cutouts?ids={id},{id}")),
        400,
        "given twice",
    );
    let side = get(&s, &format!("/api/objects/{id}")).json()["image_size"]
        .as_u64()
        .unwrap();
    assert!(
        256 * 5 * 4 * side * side > 8 << 20,
        "{side}x{side} cutouts fit anyway"
    );
    let many: Vec<String> = std::iter::once(id)
        .chain(1..256)
        .map(|i| i.to_string())
        .collect();
    let many = format!("/api/cutouts?ids={}", many.join(","));
    assert_json_error(&get(&s, &many), 400, "give crop");
    // Cropped, they would fit: the next id (made up) is the trouble.
    assert_json_error(&get(&s, &format!("{many}&crop=32")), 404, "object 1");

    assert_json_error(&get(&s, "/api/objects?limit=abc"), 400, "limit");
    assert_json_error(&get(&s, "/api/objects?class=COMET"), 400, "class");
    // A mistyped key, or a range that holds nothing, is named, not answered
    // with every object.
    assert_json_error(
        &get(&s, "/api/objects?clas=STAR"),
        400,
        "clas: not a parameter of this query",
    );
    assert_json_error(
        &get(&s, "/api/objects?ug_min=2&ug_max=1"),
        400,
        "ug_min=2 is above ug_max=1",
    );
    assert_json_error(
        &get(&s, &format!("/api/objects/{id}/image.png?strech=2")),
        400,
        "strech",
    );
    assert_json_error(&get(&s, "/api/runs?limt=5"), 400, "limt");
    assert_json_error(&get(&s, "/api/objects/12345"), 404, "no such object");
    assert_json_error(
        &get(&s, &format!("/api/objects/{id}/image.png?view=x")),
        400,
        "view",
    );
    let catalog_only = get(&s, "/api/objects?has_image=false&limit=1").json()["objects"][0]["id"]
        .as_i64()
        .unwrap();
    assert_json_error(
        &get(&s, &format!("/api/objects/{catalog_only}/image.png")),
        404,
        "no image",
    );
    assert_json_error(&get(&s, "/api/nothing-here"), 404, "no such endpoint");

    let model = get(&s, "/api/model").json();
    let weights = get(&s, model["weights_url"].as_str().unwrap());
    assert_eq!(weights.body.len() as u64, model["bytes"].as_u64().unwrap());
    assert!(
        weights
            .header("cache-control")
            .unwrap()
            .contains("immutable")
    );
}

#[test]
fn objects_with_non_square_cutouts_are_served_without_an_image() {
    let dir = tempfile::tempdir().unwrap();
    copy_datasets(dir.path());
    // One object whose cutouts are 32 x 40: the partition reader accepts them.
    let path = dir.path().join("real/part-odd.safetensors");
    write_test_partition(&path, &[4242], (32, 40));
    let s = start_in(dir.path(), "127.0.0.1:0", &[]);
    let detail = get(&s, "/api/objects/4242");
    assert_eq!(detail.status, 200);
    assert_eq!(
        detail.json()["object"]["has_image"],
        false,
        "{}",
        detail.json()
    );
    for path in ["/api/objects/4242/image.png", "/api/cutouts?ids=4242"] {
        let r = get(&s, path);
        assert_eq!(r.status, 404, "{path}");
        assert!(
            r.json()["error"].as_str().unwrap().contains("no image"),
            "{path}"
        );
    }
    // The server is still up.
    assert_eq!(get(&s, "/api/health").status, 200);
}

#[test]
fn a_partition_rewritten_under_the_server_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    copy_datasets(dir.path());
    let path = dir.path().join("synthetic/part-rewritten.safetensors");
    let ids: Vec<i64> = (5_000..5_064).collect();
    write_test_partition(&path, &ids, (32, 32));
    let s = start_in(dir.path(), "127.0.0.1:0", &[]);
    assert_eq!(get(&s, "/api/objects/5063/image.png").status, 200);
    // `cp new.safetensors x.safetensors`: the same file, cut short in place.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(4096)
        .unwrap();
    for path in ["/api/objects/5063/image.png", "/api/cutouts?ids=5063"] {
        assert_json_error(&get(&s, path), 500, "changed since it was opened");
    }
    assert_eq!(get(&s, "/api/health").status, 200);
}

#[test]
fn the_sky_lists_every_placed_object_and_a_selection_comes_back_by_ids() {
    let s = start();
    let sky = get(&s, "/api/sky").json();
    let ids = sky["ids"].as_array().unwrap();
    let n = ids.len();
    let total = get(&s, "/api/objects?limit=1").json()["total"]
        .as_u64()
        .unwrap() as usize;
    // Catalog objects all have positions; only a few renderings or detections may not.
    assert!(n > 30_000 && n <= total, "{n} of {total}");
    for column in ["ra", "dec", "redshift", "r", "colours"] {
        assert_eq!(sky[column].as_array().unwrap().len(), n, "{column}");
    }
    // The colour plots' columns agree with the objects' magnitudes.
    let first = get(&s, &format!("/api/objects?ids={}", ids[0])).json()["objects"][0].clone();
    let m: Vec<f64> = (0..5)
        .map(|k| first["magnitudes"][k].as_f64().unwrap())
        .collect();
    let c = &sky["colours"][0];
    for (k, want) in [m[0] - m[1], m[1] - m[2], m[2] - m[3]]
        .into_iter()
        .enumerate()
    {
        assert!(
            (c[k].as_f64().unwrap() - want).abs() < 2e-3,
            "colour {k}: {c} vs {m:?}"
        );
    }
    let classes = sky["classes"].as_str().unwrap();
    assert_eq!(classes.len(), n);
    assert!(classes.chars().all(|c| "GSQU".contains(c)));
    assert!(["G", "S", "Q"].iter().all(|c| classes.contains(c)));
    assert!(
        sky["ra"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| (0.0..360.0).contains(&v.as_f64().unwrap()))
    );
    assert!(
        sky["dec"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| (-90.0..=90.0).contains(&v.as_f64().unwrap()))
    );
    // A selection on the map, fetched back in its order, with the other filters applied.
    let pick: Vec<i64> = [7, 3, 500, 0]
        .iter()
        .map(|&i| ids[i].as_i64().unwrap())
        .collect();
    let list = pick
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let page = get(
        &s,
        &format!("/api/objects?ids={list},999999999999&limit=1000"),
    )
    .json();
    let got: Vec<i64> = page["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, pick, "unknown ids are skipped, the order kept");
    assert_eq!(page["total"], 4);
    let c = classes.as_bytes()[7] as char;
    let class = match c {
        'G' => "GALAXY",
        'S' => "STAR",
        'Q' => "QSO",
        _ => "UNKNOWN",
    };
    let filtered = get(&s, &format!("/api/objects?ids={list}&class={class}")).json();
    assert!(
        filtered["objects"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["class"] == class)
    );
    // Exactly the picked objects of that class (the sky's letters say which),
    // in the selection's order: ids[7]'s own among them.
    let want: Vec<i64> = [7, 3, 500, 0]
        .iter()
        .filter(|&&i| classes.as_bytes()[i] as char == c)
        .map(|&i| ids[i].as_i64().unwrap())
        .collect();
    let got: Vec<i64> = filtered["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect();
    assert!(!got.is_empty() && got[0] == pick[0], "{filtered}");
    assert_eq!(got, want, "{filtered}");
    // Hostile lists: too many ids, or not numbers.
    let many = (0..1001)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    for (query, says) in [
        (many.as_str(), "at most 1000"),
        ("1,two,3", "\"two\" is not an object id"),
    ] {
        assert_json_error(&get(&s, &format!("/api/objects?ids={query}")), 400, says);
    }
}
