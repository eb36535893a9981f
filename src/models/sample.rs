//! The built-in calibration sample: what `umbra calibrate` runs when no `--sentences` file is
//! given.
//!
//! These sentences are synthetic: written for Umbra by its developers, not drawn from any corpus,
//! so they carry no licence and no personal data. They vary on purpose in length (2 to ~70 word
//! pieces), topic, register and form: questions, lists, numbers and units, quotations, code-like
//! text, word pieces of rare words, accents and a few non-Latin characters. A calibration on a
//! real workload should pass that workload's own text with `--sentences FILE`.

/// Synthetic English sentences, one per entry (see the module comment).
pub const SENTENCES: &[&str] = &[
    "Hello.",
    "Thanks!",
    "The cat sat on the mat.",
    "A quick brown fox jumps over the lazy dog.",
    "Where is the nearest train station?",
    "I would like two coffees and a croissant, please.",
    "The meeting has been moved to Thursday at 3:30 pm.",
    "Homomorphic encryption lets a server compute on data it cannot read.",
    "She said, \"I'll be there in ten minutes,\" and then hung up.",
    "Our quarterly revenue grew by 12.5% to $4.2 million, driven mostly by subscriptions.",
    "Please do not leave your luggage unattended at any time.",
    "The mitochondria is often described as the powerhouse of the cell.",
    "Can you recommend a good book about the history of mathematics?",
    "It rained all weekend, so we stayed in and played board games.",
    "The patient reported mild headaches and occasional dizziness after the new medication.",
    "Preheat the oven to 200 degrees Celsius and bake for 25 to 30 minutes.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The committee unanimously approved the proposal after a lengthy debate.",
    "Why does the sky look blue during the day but red at sunset?",
    "He parked the car, locked the doors, and walked quickly toward the stadium.",
    "Error: the file config.json could not be opened (permission denied).",
    "The new smartphone has a larger screen, a faster processor and a better camera.",
    "Children learn languages remarkably quickly when they are immersed in them.",
    "In 1969, two astronauts walked on the surface of the Moon for the first time.",
    "The café on the corner serves crêpes, jalapeño bagels and matcha lattes.",
    "Tokyo (東京) is the capital of Japan and one of the largest cities in the world.",
    "Interest rates were left unchanged, although inflation remains above the target.",
    "Neural networks are trained by gradient descent on a loss function.",
    "Don't forget to water the plants while I'm away on holiday!",
    "The defendant pleaded not guilty, and the trial was scheduled for next spring.",
    "Antidisestablishmentarianism is a famously long English word.",
    "Our hiking route climbs 800 meters through pine forest before reaching the ridge.",
    "What time does the pharmacy close on Sundays?",
    "The orchestra played Beethoven's Ninth Symphony to a sold-out hall.",
    "Wash your hands thoroughly with soap and warm water for at least twenty seconds.",
    "The software update fixes a memory leak and improves battery life on older devices.",
    "My grandmother grew tomatoes, beans, zucchini and sunflowers in her small garden \
     behind the house, and every August the whole family came to help with the harvest, \
     canning jars of sauce late into the evening while the children chased fireflies.",
    "Although the forecast had promised clear skies, a sudden thunderstorm swept across \
     the valley in the early afternoon, flooding several roads, knocking out power to \
     thousands of homes and forcing the organizers to postpone the outdoor concert.",
    "ok",
    "Quantum computers exploit superposition and entanglement to solve certain problems faster.",
];
