//! MediaPipe FaceMesh landmark index tables STSA uses (from `../shared/stsa/landmark_tables.json`, checked
//! by a test): the 131 sketch landmarks in STSA's canonical order, the pose / content subsets and the
//! connection sets its sketches draw. Indices are MediaPipe ids (0..468) unless a name says "positions".

/// The 131 landmarks of STSA's sketches, in canonical order (`ori_sequence_idx`).
pub const STSA_131: [u16; 131] = [
    162, 127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323, 454,
    356, 389, 70, 63, 105, 66, 107, 55, 65, 52, 53, 46, 336, 296, 334, 293, 300, 276, 283, 282, 295, 285, 168, 6, 197,
    195, 5, 48, 115, 220, 45, 4, 275, 440, 344, 278, 33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145,
    144, 163, 7, 362, 398, 384, 385, 386, 387, 388, 466, 263, 249, 390, 373, 374, 380, 381, 382, 61, 185, 40, 39, 37,
    0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146, 78, 191, 80, 81, 82, 13, 312, 311, 310, 415,
    308, 324, 318, 402, 317, 14, 87, 178, 88, 95,
];

/// 76 pose landmarks (eyes, brows, nose, upper face oval), MediaPipe ids in STSA's order.
pub const POSE_76: [u16; 76] = [
    162, 127, 234, 93, 132, 361, 323, 454, 356, 389, 70, 63, 105, 66, 107, 55, 65, 52, 53, 46, 336, 296, 334, 293, 300,
    276, 283, 282, 295, 285, 168, 6, 197, 195, 5, 48, 115, 220, 45, 4, 275, 440, 344, 278, 33, 246, 161, 160, 159, 158,
    157, 173, 133, 155, 154, 153, 145, 144, 163, 7, 362, 398, 384, 385, 386, 387, 388, 466, 263, 249, 390, 373, 374,
    380, 381, 382,
];

/// 55 content landmarks (15 jaw, 40 lips), MediaPipe ids in STSA's order.
pub const CONTENT_55: [u16; 55] = [
    58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 61, 185, 40, 39, 37, 0, 267, 269, 270,
    409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146, 78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318,
    402, 317, 14, 87, 178, 88, 95,
];

/// 74 pose landmarks of the heatmap generator's variant.
pub const POSE_74: [u16; 74] = [
    162, 127, 234, 93, 323, 454, 356, 389, 70, 63, 105, 66, 107, 55, 65, 52, 53, 46, 336, 296, 334, 293, 300, 276, 283,
    282, 295, 285, 168, 6, 197, 195, 5, 48, 115, 220, 45, 4, 275, 440, 344, 278, 33, 246, 161, 160, 159, 158, 157, 173,
    133, 155, 154, 153, 145, 144, 163, 7, 362, 398, 384, 385, 386, 387, 388, 466, 263, 249, 390, 373, 374, 380, 381,
    382,
];

/// 57 content landmarks the heatmap generator predicts (17 jaw, 40 lips).
pub const CONTENT_57: [u16; 57] = [
    132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 61, 185, 40, 39, 37, 0, 267,
    269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146, 78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308,
    324, 318, 402, 317, 14, 87, 178, 88, 95,
];

/// Positions in [`STSA_131`] of pose76 then content55 (`full_face_landmark_sequence`).
pub const FULL_FACE_SEQUENCE: [u8; 131] = [
    0, 1, 2, 3, 4, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
    45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73,
    74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
    18, 19, 91, 92, 93, 94, 95, 96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113,
    114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127, 128, 129, 130,
];

/// Positions in [`STSA_131`] of pose74 then content57 (`full_face_landmark_sequence_original`).
pub const FULL_FACE_SEQUENCE_ORIGINAL: [u8; 131] = [
    0, 1, 2, 3, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46,
    47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75,
    76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18,
    19, 20, 91, 92, 93, 94, 95, 96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113,
    114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127, 128, 129, 130,
];

/// Positions in [`STSA_131`] of the 76 pose landmarks (`pose_face_landmark_sequence`).
pub const POSE_SEQUENCE: [u8; 76] = [
    0, 1, 2, 3, 4, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
    45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73,
    74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90,
];

/// The 125 edges of the full-face sketch (`FACEMESH_CONNECTION`), MediaPipe ids.
pub const CONNECTIONS_FULL: [[u16; 2]; 125] = [
    [0, 267],
    [4, 45],
    [4, 275],
    [5, 4],
    [6, 197],
    [7, 163],
    [13, 312],
    [14, 317],
    [17, 314],
    [33, 7],
    [33, 246],
    [37, 0],
    [39, 37],
    [40, 39],
    [45, 220],
    [46, 53],
    [52, 65],
    [53, 52],
    [58, 132],
    [61, 146],
    [61, 185],
    [63, 105],
    [65, 55],
    [66, 107],
    [70, 63],
    [78, 95],
    [78, 191],
    [80, 81],
    [81, 82],
    [82, 13],
    [84, 17],
    [87, 14],
    [88, 178],
    [91, 181],
    [93, 234],
    [95, 88],
    [105, 66],
    [115, 48],
    [127, 162],
    [132, 93],
    [136, 172],
    [144, 145],
    [145, 153],
    [146, 91],
    [148, 176],
    [149, 150],
    [150, 136],
    [152, 148],
    [153, 154],
    [154, 155],
    [155, 133],
    [157, 173],
    [158, 157],
    [159, 158],
    [160, 159],
    [161, 160],
    [163, 144],
    [168, 6],
    [172, 58],
    [173, 133],
    [176, 149],
    [178, 87],
    [181, 84],
    [185, 40],
    [191, 80],
    [195, 5],
    [197, 195],
    [220, 115],
    [234, 127],
    [246, 161],
    [249, 390],
    [263, 249],
    [263, 466],
    [267, 269],
    [269, 270],
    [270, 409],
    [275, 440],
    [276, 283],
    [282, 295],
    [283, 282],
    [288, 397],
    [293, 334],
    [295, 285],
    [296, 336],
    [300, 293],
    [310, 415],
    [311, 310],
    [312, 311],
    [314, 405],
    [317, 402],
    [318, 324],
    [321, 375],
    [323, 361],
    [324, 308],
    [334, 296],
    [344, 278],
    [356, 454],
    [361, 288],
    [365, 379],
    [373, 374],
    [374, 380],
    [375, 291],
    [377, 152],
    [378, 400],
    [379, 378],
    [380, 381],
    [381, 382],
    [382, 362],
    [384, 398],
    [385, 384],
    [386, 385],
    [387, 386],
    [388, 387],
    [389, 356],
    [390, 373],
    [397, 365],
    [398, 362],
    [400, 377],
    [402, 318],
    [405, 321],
    [409, 291],
    [415, 308],
    [440, 344],
    [454, 323],
    [466, 388],
];

/// The 69 edges of the pose sketch (`FACEMESH_POSE`), MediaPipe ids.
pub const CONNECTIONS_POSE: [[u16; 2]; 69] = [
    [4, 45],
    [4, 275],
    [5, 4],
    [6, 197],
    [7, 163],
    [33, 7],
    [33, 246],
    [45, 220],
    [46, 53],
    [52, 65],
    [53, 52],
    [63, 105],
    [65, 55],
    [66, 107],
    [70, 63],
    [93, 234],
    [105, 66],
    [115, 48],
    [127, 162],
    [132, 93],
    [144, 145],
    [145, 153],
    [153, 154],
    [154, 155],
    [155, 133],
    [157, 173],
    [158, 157],
    [159, 158],
    [160, 159],
    [161, 160],
    [163, 144],
    [168, 6],
    [173, 133],
    [195, 5],
    [197, 195],
    [220, 115],
    [234, 127],
    [246, 161],
    [249, 390],
    [263, 249],
    [263, 466],
    [275, 440],
    [276, 283],
    [282, 295],
    [283, 282],
    [293, 334],
    [295, 285],
    [296, 336],
    [300, 293],
    [323, 361],
    [334, 296],
    [344, 278],
    [356, 454],
    [373, 374],
    [374, 380],
    [380, 381],
    [381, 382],
    [382, 362],
    [384, 398],
    [385, 384],
    [386, 385],
    [387, 386],
    [388, 387],
    [389, 356],
    [390, 373],
    [398, 362],
    [440, 344],
    [454, 323],
    [466, 388],
];

/// Landmarks MediaPipe re-tracks the face from (eye corners): the ROI's rotation.
pub const TRACKING_EYE_CORNERS: (usize, usize) = (33, 263);

/// Upper and lower lip centre: STSA's lip openness is their distance.
pub const LIP_CENTRE: (usize, usize) = (0, 17);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_agree_with_each_other() {
        for (k, &pos) in POSE_SEQUENCE.iter().enumerate() {
            assert_eq!(STSA_131[pos as usize], POSE_76[k]);
        }
        for (k, &pos) in FULL_FACE_SEQUENCE[76..].iter().enumerate() {
            assert_eq!(STSA_131[pos as usize], CONTENT_55[k]);
        }
        for (k, &pos) in FULL_FACE_SEQUENCE_ORIGINAL.iter().enumerate() {
            let id = if k < 74 { POSE_74[k] } else { CONTENT_57[k - 74] };
            assert_eq!(STSA_131[pos as usize], id);
        }
        let mut ids: Vec<u16> = CONNECTIONS_FULL.iter().flatten().copied().collect();
        ids.sort_unstable();
        ids.dedup();
        let mut all = STSA_131.to_vec();
        all.sort_unstable();
        assert_eq!(ids, all, "the 131 landmarks are exactly those the connections use");
    }

    #[test]
    fn tables_match_the_shared_json() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/stsa/landmark_tables.json");
        let Ok(json) = std::fs::read_to_string(path) else {
            panic!("{path} missing: the tables are checked against it");
        };
        let list = |key: &str| -> String {
            let start = json.find(&format!("\"{key}\"")).unwrap_or_else(|| panic!("{key}"));
            let open = start + json[start..].find('[').unwrap();
            let mut depth = 0;
            for (i, c) in json[open..].char_indices() {
                match c {
                    '[' => depth += 1,
                    ']' => {
                        depth -= 1;
                        if depth == 0 {
                            return json[open..open + i + 1].chars().filter(|c| !c.is_whitespace()).collect();
                        }
                    }
                    _ => {}
                }
            }
            unreachable!()
        };
        let fmt = |v: &[u16]| format!("[{}]", v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(","));
        let fmt_pairs =
            |v: &[[u16; 2]]| format!("[{}]", v.iter().map(|[a, b]| format!("[{a},{b}]")).collect::<Vec<_>>().join(","));
        assert_eq!(list("ori_sequence_idx"), fmt(&STSA_131));
        assert_eq!(list("pose76_mediapipe_ids_in_order"), fmt(&POSE_76));
        assert_eq!(list("content55_mediapipe_ids_in_order"), fmt(&CONTENT_55));
        assert_eq!(list("pose74_mediapipe_ids_in_order"), fmt(&POSE_74));
        assert_eq!(list("predicted_content57_mediapipe_ids_in_order"), fmt(&CONTENT_57));
        assert_eq!(list("FACEMESH_CONNECTION"), fmt_pairs(&CONNECTIONS_FULL));
        assert_eq!(list("FACEMESH_POSE"), fmt_pairs(&CONNECTIONS_POSE));
    }
}
