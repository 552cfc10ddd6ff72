// Playground samples: non-English requests with their English source (the translation the model
// mixes in). Taken from the demo data in examples/data/ (SIB-200, UD PUD, XQuAD; see each
// SOURCE.md for licence and origin). `gold` is the reference answer, shown for comparison.
"use strict";

window.XMIXUP_SAMPLES = {
  classify: [
    {
      lang: "de", name: "German",
      target: "Internationale Sanktionen haben bewirkt, dass keine neuen Flugzeuge gekauft werden können.",
      source: "International sanctions have meant that new aircraft cannot be purchased.",
      gold: "politics",
    },
    {
      lang: "zh", name: "Chinese",
      target: "由于一天只颁发十八块奖牌，许多国家的运动员未能登上领奖台。",
      source: "With only eighteen medals available a day, a number of countries have failed to make the medal podium.",
      gold: "sports",
    },
    {
      lang: "es", name: "Spanish",
      target: "Si examina a un ser vivo bajo un microscopio, advertirá que están compuestos por pequeños cuadrados o esferas.",
      source: "If you look at living things under a microscope, you will see that they are made of small squares or balls.",
      gold: "science/technology",
    },
    {
      lang: "vi", name: "Vietnamese",
      target: "Trong vòng một năm thì một người nhiễm bệnh có thể truyền cho 10 đến 15 người tiếp xúc gần.",
      source: "In one year's time, an infected person may infect 10 to 15 close contacts.",
      gold: "health",
    },
    {
      lang: "sw", name: "Swahili",
      target: "Wakati wa barafu nyingi, barafu ya kutosha kukufanya ukwame inaweza kuanguka kwa muda mfupi.",
      source: "During blizzards, enough snow to get you stuck can fall in very little time.",
      gold: "travel",
    },
  ],
  tag: [
    {
      lang: "de", name: "German",
      target: "Die Ruinen wurden später überbaut.",
      source: "The ruins were later built over.",
      gold: "DET NOUN AUX ADV VERB PUNCT",
    },
    {
      lang: "zh", name: "Chinese (pre-split words)",
      target: "六 大國 沒有 滿足 承認 阿爾巴尼亞 的 請求 。",
      source: "The Great Powers did not fulfill the requests for recognition of Albania .",
      presplit: true,
      gold: "NUM NOUN VERB VERB VERB PROPN PART NOUN PUNCT",
    },
    {
      lang: "es", name: "Spanish",
      target: "La producción de este modelo de teléfono inteligente fue detenida completamente.",
      source: "Production of the smartphone model was completely discontinued.",
      gold: "DET NOUN ADP DET NOUN ADP NOUN ADJ AUX VERB ADV PUNCT",
    },
    {
      lang: "id", name: "Indonesian",
      target: "Dündar mengingatkan Eropa soal terlalu pengertian terhadap pergerakan Erdogan.",
      source: "Dündar warned Europe about having too much understanding for Erdogan's course.",
      gold: "PROPN VERB PROPN ADP ADV NOUN ADP NOUN PROPN PUNCT",
    },
    {
      lang: "fi", name: "Finnish",
      target: "Teollinen vallankumous loi kysynnän koneissa käytettäville metalliosille.",
      source: "The Industrial Revolution created a demand for metal parts used in machinery.",
      gold: "ADJ NOUN VERB NOUN NOUN VERB NOUN PUNCT",
    },
  ],
  qa: [
    {
      lang: "de", name: "German",
      question: "Wie viele mögliche Nominierungen für den Preis gab es 1915?",
      context: "In den Jahren nach diesen Gerüchten gewannen weder Tesla noch Edison den Nobelpreis (obwohl Edison 1915 eine von 38 möglichen Nominierungen erhielt und Tesla 1937 eine von 38 möglichen Nominierungen).",
      source_question: "How many possible bids for the prize were there in 1915?",
      source_context: "In the years after these rumors, neither Tesla nor Edison won the prize (although Edison did receive one of 38 possible bids in 1915 and Tesla did receive one of 38 possible bids in 1937).",
      gold: "38",
    },
    {
      lang: "zh", name: "Chinese",
      question: "函数问题一般可以重新表述为什么？",
      context: "人们很容易认为函数问题的概念要比决策问题的概念丰富得多。然而，实际情况并非如此，因为函数问题可以重新定义为决策问题。例如，两个整数的乘法可以表示为三元组 (a, b, c)，使得关系 a × b = c 成立。确定一个给定的三元组是否属于该集合相当于解决两个数相乘的问题。",
      source_question: "How can function problems typically be restated?",
      source_context: "It is tempting to think that the notion of function problems is much richer than the notion of decision problems. However, this is not really the case, since function problems can be recast as decision problems. For example, the multiplication of two integers can be expressed as the set of triples (a, b, c) such that the relation a × b = c holds. Deciding whether a given triple is a member of this set corresponds to solving the problem of multiplying two numbers.",
      gold: "决策问题",
    },
    {
      lang: "es", name: "Spanish",
      question: "¿Cuántas posibles propuestas habían para el premio en 1915?",
      context: "En los años que sucedieron a estos rumores, ni Tesla ni Edison ganaron el premio. Aunque en 1915, Edison recibió una propuesta de 38 posibles mientras que Tesla también recibió una de 38 posibles en el año 1937.",
      source_question: "How many possible bids for the prize were there in 1915?",
      source_context: "In the years after these rumors, neither Tesla nor Edison won the prize (although Edison did receive one of 38 possible bids in 1915 and Tesla did receive one of 38 possible bids in 1937).",
      gold: "38",
    },
    {
      lang: "vi", name: "Vietnamese",
      question: "Phần nào trong tuyên bố cuối cùng của Luther là tiếng Đức?",
      context: "Một mảnh giấy sau đó đã được tìm thấy, trên đó Luther đã viết tuyên bố cuối cùng của ông. Tuyên bố bằng tiếng Latin, khác với \"Chúng ta là những người ăn xin\" được viết bằng tiếng Đức.",
      source_question: "What portion of Luther's last statement was in German?",
      source_context: "A piece of paper was later found on which Luther had written his last statement. The statement was in Latin, apart from \"We are beggars,\" which was in German.",
      gold: "\"Chúng ta là những người ăn xin\"",
    },
  ],
};
